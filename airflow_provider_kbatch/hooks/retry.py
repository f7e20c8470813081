"""Retry policy for transient Kubernetes API errors, shared by the sync and async hooks.

Pure: no Kubernetes client, no Airflow. Errors are classified by duck typing (an exception with an
integer ``.status`` and optional ``.headers`` is an HTTP error, whichever client raised it) and by
the qualified names of the transport exceptions (urllib3, aiohttp), so this module imports neither.
The sleep and the clock are injected: tests never really sleep.

Retried: 429 (honouring ``Retry-After`` in seconds or as an HTTP date), 500, 502, 503, 504,
connection resets and timeouts. Never retried: every other status (400, 401, 403, 404, 409, 410,
422, ...) and anything unknown.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

# (module, class name) of transport errors that mean "the connection broke or timed out".
_TRANSIENT_TRANSPORT_ERRORS = frozenset(
    {
        ("urllib3.exceptions", "ProtocolError"),
        ("urllib3.exceptions", "ReadTimeoutError"),
        ("urllib3.exceptions", "ConnectTimeoutError"),
        ("urllib3.exceptions", "NewConnectionError"),
        ("urllib3.exceptions", "IncompleteRead"),
        ("aiohttp.client_exceptions", "ClientConnectionError"),
        ("aiohttp.client_exceptions", "ServerDisconnectedError"),
        ("aiohttp.client_exceptions", "ClientPayloadError"),
    }
)
# Subclasses of the above that are configuration problems, not hiccups.
_PERMANENT_TRANSPORT_ERRORS = frozenset(
    {
        ("aiohttp.client_exceptions", "ClientConnectorCertificateError"),
        ("aiohttp.client_exceptions", "ClientSSLError"),
        ("aiohttp.client_exceptions", "ClientConnectorSSLError"),
        ("aiohttp.client_exceptions", "InvalidURL"),
    }
)


def _qualnames(exc: BaseException) -> set[tuple[str, str]]:
    return {(cls.__module__, cls.__name__) for cls in type(exc).__mro__}


def http_status(exc: BaseException | None) -> int | None:
    """The HTTP status an API exception carries (``kubernetes``/``kubernetes_asyncio`` ApiException,
    KbatchApiError), or None when it is not an HTTP error."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and not isinstance(status, bool) and status > 0 else None


def is_transient_exception(exc: BaseException) -> bool:
    """True for connection resets, refused connections and timeouts (any client)."""
    names = _qualnames(exc)
    if names & _PERMANENT_TRANSPORT_ERRORS:
        return False
    if names & _TRANSIENT_TRANSPORT_ERRORS:
        return True
    if ("urllib3.exceptions", "MaxRetryError") in names:
        reason = getattr(exc, "reason", None)
        return reason is None or (isinstance(reason, BaseException) and is_transient_exception(reason))
    return isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError))


def header(headers: Mapping[str, Any] | Any | None, name: str) -> str | None:
    """Case-insensitive header lookup on a dict, urllib3 ``HTTPHeaderDict`` or aiohttp ``CIMultiDict``."""
    if not headers:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is None and hasattr(headers, "items"):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if value is None else str(value)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date), None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient API errors.

    ``attempt`` is the 1-based number of the attempt that just failed; after ``max_attempts`` failed
    attempts :meth:`delay` returns None (give up). The backoff is ``base_delay * 2**(attempt-1)``,
    spread by ``±jitter`` (a fraction, drawn from the injected ``random``) and capped at
    ``max_delay``. A 429's ``Retry-After`` replaces the backoff (also capped at ``max_delay``);
    an HTTP-date ``Retry-After`` is measured against the injected ``now`` (epoch seconds).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.2
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)
    now: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be a fraction between 0 and 1")

    def backoff(self, attempt: int) -> float:
        """The jittered, capped exponential delay after failed attempt number ``attempt``."""
        raw = self.base_delay * (2 ** max(0, attempt - 1))
        spread = raw * self.jitter * (2 * self.random() - 1)
        return max(0.0, min(float(self.max_delay), float(raw + spread)))

    def delay(
        self,
        attempt: int,
        *,
        status: int | None = None,
        headers: Mapping[str, Any] | Any | None = None,
        exc: BaseException | None = None,
    ) -> float | None:
        """Seconds to sleep before the next attempt, or None when the error must be raised."""
        if exc is not None:
            exc_status = http_status(exc)
            if exc_status is not None:
                status = exc_status
                headers = headers if headers is not None else getattr(exc, "headers", None)
            elif status is None and not is_transient_exception(exc):
                return None
        if status is not None and status not in TRANSIENT_STATUSES:
            return None
        if status is None and exc is None:
            return None
        if attempt >= self.max_attempts:
            return None
        if status == 429:
            retry_after = parse_retry_after(header(headers, "Retry-After"), self.now())
            if retry_after is not None:
                return min(self.max_delay, retry_after)
        return self.backoff(attempt)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors as ``policy`` says."""
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            pause = policy.delay(attempt, exc=exc)
            if pause is None:
                raise
            log.warning(
                "transient Kubernetes API error (attempt %d), retrying in %.2fs: %s", attempt, pause, exc
            )
        sleep(pause)
        attempt += 1


async def acall_with_retry(
    coro_fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Async :func:`call_with_retry`. ``asyncio.CancelledError`` is never caught."""
    attempt = 1
    while True:
        try:
            return await coro_fn()
        except Exception as exc:
            pause = policy.delay(attempt, exc=exc)
            if pause is None:
                raise
            log.warning(
                "transient Kubernetes API error (attempt %d), retrying in %.2fs: %s", attempt, pause, exc
            )
        await sleep(pause)
        attempt += 1
