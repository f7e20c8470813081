from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from airflow_provider_kbatch.errors import KbatchApiError
from airflow_provider_kbatch.hooks.retry import RetryPolicy
from airflow_provider_kbatch.hooks.watch import resumable_watch
from tests.unit.hooks.fakes import (
    FakeStream,
    FakeWatchServer,
    Sleeps,
    bookmark,
    event,
    fail,
    gone_event,
    job,
)

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.0)


class Lister:
    """``list_fn``: returns the scripted lists in order."""

    def __init__(self, *lists: tuple[list[dict[str, Any]], str]) -> None:
        self.lists = list(lists)
        self.count = 0

    async def __call__(self) -> tuple[list[dict[str, Any]], str]:
        self.count += 1
        return self.lists.pop(0)


class Clock:
    """Advances 10 s per reading unless frozen: watches look healthy by default."""

    def __init__(self, step: float = 10.0) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def take(watch: Any, n: int) -> list[tuple[str, str]]:
    """The first n events as (type, resourceVersion), then stop the watch."""
    seen = []
    async for kind, obj in watch:
        seen.append((kind, obj["metadata"]["resourceVersion"]))
        if len(seen) == n:
            break
    await watch.aclose()
    return seen


def watch(lister: Lister, server: FakeWatchServer, sleeps: Sleeps, clock: Clock | None = None) -> Any:
    return resumable_watch(lister, server, policy=POLICY, sleep=sleeps.asleep, clock=clock or Clock())


async def test_lists_then_watches_from_the_list_resource_version() -> None:
    lister = Lister(([job("j", "5")], "7"))
    server = FakeWatchServer(FakeStream(event("MODIFIED", job("j", "8", active=1))))
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 2) == [("ADDED", "5"), ("MODIFIED", "8")]
    assert server.opened == ["7"]
    assert sleeps.delays == []


async def test_bookmark_moves_the_resource_version_and_normal_end_resumes_from_it() -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(
        FakeStream(event("MODIFIED", job("j", "8")), bookmark("12")),  # then the server times out
        FakeStream(event("MODIFIED", job("j", "13", succeeded=2))),
    )
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 3) == [
        ("ADDED", "5"),
        ("MODIFIED", "8"),
        ("MODIFIED", "13"),
    ]
    assert server.opened == ["5", "12"]
    assert lister.count == 1
    assert sleeps.delays == []  # a normal end reconnects at once
    assert all(stream.closed for stream in server.served)


async def test_410_error_event_relists() -> None:
    lister = Lister(([job("j", "5")], "5"), ([job("j", "40", active=1)], "41"))
    server = FakeWatchServer(
        FakeStream(gone_event()),
        FakeStream(event("MODIFIED", job("j", "42"))),
    )
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 3) == [
        ("ADDED", "5"),
        ("MODIFIED", "40"),
        ("MODIFIED", "42"),
    ]
    assert lister.count == 2
    assert server.opened == ["5", "41"]
    assert sleeps.delays == []


class FlakyLister(Lister):
    """A re-list that first meets a refused connection (the API server is restarting)."""

    def __init__(self, error: BaseException, *lists: tuple[list[dict[str, Any]], str]) -> None:
        super().__init__(*lists)
        self.error: BaseException | None = error

    async def __call__(self) -> tuple[list[dict[str, Any]], str]:
        if self.count == 1 and self.error is not None:
            error, self.error = self.error, None
            self.count += 1
            raise error
        return await super().__call__()


async def test_relist_after_410_backs_off_on_a_refused_connection() -> None:
    lister = FlakyLister(ConnectionRefusedError(111, "Connection refused"), ([job("j", "5")], "5"),
                         ([job("j", "40", active=1)], "41"))  # fmt: skip
    server = FakeWatchServer(FakeStream(gone_event()), FakeStream(event("MODIFIED", job("j", "42"))))
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 3) == [
        ("ADDED", "5"),
        ("MODIFIED", "40"),
        ("MODIFIED", "42"),
    ]
    assert len(sleeps.delays) == 1 and sleeps.delays[0] > 0


async def test_relist_with_a_permanent_error_raises() -> None:
    lister = FlakyLister(fail(403, "Forbidden", "no"), ([job("j", "5")], "5"))
    server = FakeWatchServer(FakeStream(gone_event()))
    with pytest.raises(KbatchApiError):
        await take(watch(lister, server, Sleeps()), 3)


async def test_410_http_status_relists_and_reports_vanished_objects() -> None:
    pod_a, pod_b = job("a", "5", uid="ua"), job("b", "6", uid="ub")
    lister = Lister(([pod_a, pod_b], "6"), ([job("b", "6", uid="ub")], "50"))
    server = FakeWatchServer(
        fail(410, "Expired", "too old resource version"),
        FakeStream(event("ADDED", job("c", "51", uid="uc"))),
    )
    events = await take(watch(lister, server, Sleeps()), 4)
    # b did not change across the re-list: not reported again
    assert events == [("ADDED", "5"), ("ADDED", "6"), ("DELETED", "5"), ("ADDED", "51")]


@pytest.mark.parametrize(
    "interruption",
    [
        asyncio.TimeoutError(),
        aiohttp.ServerDisconnectedError(),
        fail(503, "ServiceUnavailable", "apiserver busy"),
    ],
)
async def test_transient_errors_reconnect_from_the_last_version_with_backoff(
    interruption: BaseException,
) -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(
        FakeStream(event("MODIFIED", job("j", "9")), error=interruption),
        interruption,
        FakeStream(event("MODIFIED", job("j", "10"))),
    )
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 3) == [
        ("ADDED", "5"),
        ("MODIFIED", "9"),
        ("MODIFIED", "10"),
    ]
    assert server.opened == ["5", "9", "9"]
    assert sleeps.delays == [1.0, 2.0]
    assert lister.count == 1


async def test_error_event_with_transient_code_reconnects() -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(
        FakeStream({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "internal"}}),
        FakeStream(event("MODIFIED", job("j", "6"))),
    )
    sleeps = Sleeps()
    assert await take(watch(lister, server, sleeps), 2) == [("ADDED", "5"), ("MODIFIED", "6")]
    assert sleeps.delays == [1.0]


async def test_non_transient_errors_raise() -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(fail(403, "Forbidden", "jobs.batch is forbidden"))
    with pytest.raises(KbatchApiError, match="forbidden"):
        await take(watch(lister, server, Sleeps()), 5)


async def test_gives_up_after_the_policy_attempts() -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(*(ConnectionResetError() for _ in range(POLICY.max_attempts)))
    sleeps = Sleeps()
    with pytest.raises(ConnectionResetError):
        await take(watch(lister, server, sleeps), 5)
    assert sleeps.delays == [1.0, 2.0]


async def test_a_watch_closed_at_once_backs_off() -> None:
    lister = Lister(([job("j", "5")], "5"))
    server = FakeWatchServer(FakeStream(), FakeStream(), FakeStream(event("MODIFIED", job("j", "6"))))
    sleeps = Sleeps()
    events = await take(watch(lister, server, sleeps, Clock(step=0.0)), 2)
    assert events == [("ADDED", "5"), ("MODIFIED", "6")]
    assert sleeps.delays == [1.0, 2.0]


async def test_cancellation_propagates_and_closes_the_stream() -> None:
    entered = asyncio.Event()

    class Hanging(FakeStream):
        pass

    lister = Lister(([job("j", "5")], "5"))
    stream = Hanging()
    server = FakeWatchServer(stream)

    async def hang_events(_: FakeStream) -> Any:
        entered.set()
        await asyncio.Event().wait()
        yield {}

    server._events = hang_events  # type: ignore[method-assign,assignment]

    async def consume() -> None:
        async for _ in watch(lister, server, Sleeps()):
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed


async def test_keep_picks_what_is_kept_and_reported_also_for_objects_gone_during_a_relist() -> None:
    """A watch of 100,000 pods must not hold them whole: ``keep`` decides what it holds (the
    last known state it reports as DELETED after a re-list is that too)."""

    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {k: obj["metadata"][k] for k in ("name", "uid", "resourceVersion")}}

    a, b = job("a", "5", uid="ua"), job("b", "6", uid="ub")
    lister = Lister(([keep(a), keep(b)], "6"), ([keep(b)], "50"))  # list_fn returns kept objects
    server = FakeWatchServer(
        FakeStream(event("MODIFIED", job("a", "7", uid="ua", active=1))),
        fail(410, "Expired", "too old resource version"),
    )
    reported = []
    stream = resumable_watch(lister, server, policy=POLICY, sleep=Sleeps().asleep, clock=Clock(), keep=keep)
    async for kind, obj in stream:
        reported.append((kind, obj))
        if len(reported) == 4:
            break
    await stream.aclose()
    assert [(k, o["metadata"]["name"], o["metadata"]["resourceVersion"]) for k, o in reported] == [
        ("ADDED", "a", "5"),
        ("ADDED", "b", "6"),
        ("MODIFIED", "a", "7"),
        ("DELETED", "a", "7"),  # its last known state: the kept MODIFIED event
    ]
    assert all(set(o) == {"metadata"} for _, o in reported), reported
