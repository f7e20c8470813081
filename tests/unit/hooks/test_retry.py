from __future__ import annotations

import asyncio
import dataclasses
import email.utils
from typing import Any

import aiohttp
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException as SyncApiException
from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException

from airflow_provider_kbatch.errors import KbatchApiError
from airflow_provider_kbatch.hooks.base import DEFAULT_RETRY_POLICY
from airflow_provider_kbatch.hooks.retry import (
    RetryPolicy,
    acall_with_retry,
    call_with_retry,
    is_transient_exception,
    parse_retry_after,
)
from tests.unit.hooks.fakes import Sleeps

NOW = 1_800_000_000.0
NO_POOL: Any = None  # urllib3 errors only keep the pool for their message
# No jitter, doubling from 1 s, capped at 8 s, 5 attempts.
POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=8.0, jitter=0.0, now=lambda: NOW)


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def api_exc(cls: type, status: int, headers: dict[str, str] | None = None) -> Exception:
    exc = cls(status=status, reason="x")
    exc.headers = headers
    return exc  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("attempt", "status", "headers", "expected"),
    [
        (1, 429, {"Retry-After": "3"}, 3.0),
        (1, 429, {"retry-after": "2.5"}, 2.5),
        (1, 429, {"Retry-After": http_date(NOW + 6)}, 6.0),
        (1, 429, {"Retry-After": http_date(NOW - 60)}, 0.0),
        (1, 429, {"Retry-After": "120"}, 8.0),  # honoured up to max_delay
        (2, 429, {"Retry-After": "garbage"}, 2.0),  # unusable header: backoff
        (3, 429, None, 4.0),
        (1, 500, None, 1.0),
        (2, 502, None, 2.0),
        (3, 503, None, 4.0),
        (4, 504, None, 8.0),
        (1, 400, None, None),
        (1, 401, None, None),
        (1, 403, None, None),
        (1, 404, None, None),
        (1, 409, None, None),
        (1, 410, None, None),
        (1, 422, None, None),
        (1, 501, None, None),
        (5, 503, None, None),  # max attempts reached
        (5, 429, {"Retry-After": "1"}, None),
    ],
)
def test_delay_by_status(
    attempt: int, status: int, headers: dict[str, str] | None, expected: float | None
) -> None:
    assert POLICY.delay(attempt, status=status, headers=headers) == expected


def test_backoff_is_capped() -> None:
    assert [POLICY.backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 1.5), (0.5, 2.0), (1.0, 2.5)])
def test_jitter_comes_from_the_injected_random(draw: float, expected: float) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0, jitter=0.25, random=lambda: draw)
    assert policy.delay(2, status=503) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")), 1.0),
        (
            urllib3.exceptions.MaxRetryError(
                NO_POOL, "/api", urllib3.exceptions.NewConnectionError(NO_POOL, "refused")
            ),
            1.0,
        ),
        (urllib3.exceptions.MaxRetryError(NO_POOL, "/api", urllib3.exceptions.SSLError("bad cert")), None),
        (urllib3.exceptions.ReadTimeoutError(NO_POOL, "/api", "read timed out"), 1.0),
        (ConnectionResetError(104, "Connection reset by peer"), 1.0),
        (ConnectionRefusedError(111, "refused"), 1.0),
        (asyncio.TimeoutError(), 1.0),
        (aiohttp.ClientConnectionError("boom"), 1.0),
        (aiohttp.ServerDisconnectedError(), 1.0),
        (aiohttp.ClientPayloadError("truncated"), 1.0),
        (ValueError("not transient"), None),
        (api_exc(SyncApiException, 503), 1.0),
        (api_exc(SyncApiException, 404), None),
        (api_exc(AsyncApiException, 429, {"Retry-After": "4"}), 4.0),
        (api_exc(AsyncApiException, 422), None),
        (SyncApiException(status=0, reason="SSLError"), None),
        (KbatchApiError(500, "InternalError", "etcd leader changed"), 1.0),
        (KbatchApiError(409, "Conflict", "modified"), None),
    ],
)
def test_delay_by_exception(exc: BaseException, expected: float | None) -> None:
    assert POLICY.delay(1, exc=exc) == expected


def test_certificate_errors_are_not_transient() -> None:
    conn_key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    cert = aiohttp.ClientConnectorCertificateError(conn_key, ValueError("self-signed"))
    assert not is_transient_exception(cert)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after(" 7 ", NOW) == 7.0
    assert parse_retry_after(http_date(NOW + 30), NOW) == 30.0
    assert parse_retry_after("soon", NOW) is None


def test_invalid_policy() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


def test_call_with_retry_sleeps_the_policy_delays_then_succeeds() -> None:
    sleeps = Sleeps()
    outcomes: list[BaseException | str] = [
        api_exc(SyncApiException, 503),
        api_exc(SyncApiException, 429, {"Retry-After": "5"}),
        ConnectionResetError(),
        "ok",
    ]

    def fn() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert call_with_retry(fn, POLICY, sleep=sleeps) == "ok"
    assert sleeps.delays == [1.0, 5.0, 4.0]


def test_call_with_retry_raises_non_transient_at_once() -> None:
    sleeps = Sleeps()

    def fn() -> None:
        raise api_exc(SyncApiException, 403)

    with pytest.raises(SyncApiException):
        call_with_retry(fn, POLICY, sleep=sleeps)
    assert sleeps.delays == []


def test_call_with_retry_gives_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    calls = []

    def fn() -> None:
        calls.append(1)
        raise api_exc(SyncApiException, 500)

    with pytest.raises(SyncApiException):
        call_with_retry(fn, POLICY, sleep=sleeps)
    assert len(calls) == POLICY.max_attempts
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0]


def test_the_hooks_default_policy_outlasts_an_api_server_restart() -> None:
    """Refused connections for 30 s (a restart on a loaded machine took 9 s in CI; a real control
    plane upgrade takes longer) do not fail a request, even with every delay jittered short."""
    shortest = dataclasses.replace(DEFAULT_RETRY_POLICY, random=lambda: 0.0)
    sleeps = Sleeps()
    down = urllib3.exceptions.NewConnectionError(NO_POOL, "Connection refused")

    def fn() -> str:
        if sum(sleeps.delays) < 30.0:
            raise urllib3.exceptions.MaxRetryError(NO_POOL, "/api/v1/namespaces/ns/configmaps/l", down)
        return "ok"

    assert call_with_retry(fn, shortest, sleep=sleeps) == "ok"
    # ... and an API server that never comes back fails the request within a minute.
    longest = dataclasses.replace(DEFAULT_RETRY_POLICY, random=lambda: 1.0)
    never = Sleeps()

    def gone() -> str:
        raise urllib3.exceptions.MaxRetryError(NO_POOL, "/api/v1/namespaces/ns/configmaps/l", down)

    with pytest.raises(urllib3.exceptions.MaxRetryError):
        call_with_retry(gone, longest, sleep=never)
    assert 40.0 < sum(never.delays) < 60.0


async def test_acall_with_retry() -> None:
    sleeps = Sleeps()
    outcomes: list[BaseException | int] = [
        aiohttp.ServerDisconnectedError(),
        api_exc(AsyncApiException, 502),
        7,
    ]

    async def fn() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await acall_with_retry(fn, POLICY, sleep=sleeps.asleep) == 7
    assert sleeps.delays == [1.0, 2.0]


async def test_acall_with_retry_never_swallows_cancellation() -> None:
    sleeps = Sleeps()

    async def fn() -> None:
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        await acall_with_retry(fn, POLICY, sleep=sleeps.asleep)
    assert sleeps.delays == []
