"""The process node's API client: retries as ``RetryPolicy`` decides, the informer over
``resumable_watch`` (re-list on 410, vanished objects as DELETED, never giving up)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from airflow_provider_kbatch.devcluster.ports import free_port
from airflow_provider_kbatch.devcluster.processnode.kubeapi import (
    WATCH_POLICY,
    ApiError,
    Informer,
    KubeClient,
)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def pod(name: str, rv: str, uid: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid or f"u-{name}", "resourceVersion": rv}}


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


GONE = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}


@asynccontextmanager
async def api_server(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def scripted(*answers: tuple[int, dict[str, str], Any]) -> tuple[Any, list[str]]:
    """A handler answering each request with the next (status, headers, body); the paths it saw."""
    seen: list[str] = []
    queue = list(answers)

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.json_response(body, status=status, headers=headers)

    return handler, seen


@pytest.mark.parametrize(
    ("answers", "delays"),
    [
        ([(503, {}, {}), (500, {}, {}), (200, {}, {"ok": 1})], [0.2, 0.4]),
        ([(429, {"Retry-After": "3"}, {}), (200, {}, {"ok": 1})], [3.0]),
        ([(429, {"Retry-After": "60"}, {}), (200, {}, {"ok": 1})], [10.0]),
    ],
)
async def test_transient_statuses_are_retried_as_the_policy_says(
    answers: list[tuple[int, dict[str, str], Any]], delays: list[float]
) -> None:
    handler, seen = scripted(*answers)
    sleeps = Sleeps()
    async with api_server(handler) as url:
        client = KubeClient(url, False, {}, sleep=sleeps)
        try:
            assert await client.request("GET", "/api/v1/pods") == {"ok": 1}
        finally:
            await client.close()
    assert sleeps.delays == delays
    assert len(seen) == len(answers)


async def test_other_statuses_raise_at_once_and_transient_ones_after_six_attempts() -> None:
    sleeps = Sleeps()
    handler, seen = scripted((404, {}, {"message": 'pods "x" not found'}))
    async with api_server(handler) as url:
        client = KubeClient(url, False, {}, sleep=sleeps)
        try:
            with pytest.raises(ApiError, match="not found") as error:
                await client.get("/api/v1/namespaces/ns/pods/x")
            assert error.value.status == 404 and sleeps.delays == [] and len(seen) == 1
        finally:
            await client.close()
    handler, seen = scripted((503, {}, {"message": "busy"}))
    async with api_server(handler) as url:
        client = KubeClient(url, False, {}, sleep=sleeps)
        try:
            with pytest.raises(ApiError) as error:
                await client.request("POST", "/api/v1/namespaces/ns/events", body={})
        finally:
            await client.close()
    assert error.value.status == 503 and len(seen) == 6
    assert sleeps.delays == [0.2, 0.4, 0.8, 1.6, 3.2]


async def test_an_unreachable_server_is_retried_then_reported_as_status_0() -> None:
    sleeps = Sleeps()
    client = KubeClient(f"http://127.0.0.1:{free_port()}", False, {}, sleep=sleeps)
    try:
        with pytest.raises(ApiError) as error:
            await client.get("/version")
    finally:
        await client.close()
    assert error.value.status == 0
    assert sleeps.delays == [0.2, 0.4, 0.8, 1.6, 3.2]


class FakeClient:
    """Scripted lists and watches; a watch with nothing left to serve hangs (the test cancels)."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[Any]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.opened: list[str] = []

    async def request(self, method: str, path: str, **_: Any) -> Any:
        items, rv = self.lists.pop(0)
        return {"items": items, "metadata": {"resourceVersion": rv}}

    @asynccontextmanager
    async def watch(self, path: str, rv: str, params: Any = None) -> AsyncIterator[AsyncIterator[Any]]:
        self.opened.append(rv)
        script = self.watches.pop(0) if self.watches else []
        if isinstance(script, BaseException):
            raise script

        async def events() -> AsyncIterator[Any]:
            for item in script:
                yield item
            if not self.watches:
                await asyncio.Event().wait()

        yield events()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10.0  # every watch looks long-lived: no backoff for closing early
        return self.now


async def collect(informer: Informer, count: int, handler: Any = None) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    enough = asyncio.Event()

    async def on_event(kind: str, obj: dict[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))
        if len(seen) == count:
            enough.set()
        if handler is not None:
            await handler(kind, obj)

    task = asyncio.create_task(informer.run(on_event))
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return seen


def informer(client: FakeClient, sleeps: Sleeps) -> Informer:
    return Informer(client, "/api/v1/pods", sleep=sleeps, clock=Clock())  # type: ignore[arg-type]


async def test_a_relist_after_410_reports_the_pods_that_vanished_as_deleted() -> None:
    client = FakeClient(
        lists=[
            ([pod("a", "4"), pod("b", "5")], "5"),
            ([pod("b", "6"), pod("c", "8")], "9"),
            ([pod("c", "8")], "12"),
        ],
        watches=[[event("MODIFIED", pod("b", "6")), GONE], ApiError(410, {}, "WATCH"), []],
    )
    sleeps = Sleeps()
    seen = await collect(informer(client, sleeps), 6)
    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("DELETED", "a"),  # the 410 event: list again
        ("ADDED", "c"),
        ("DELETED", "b"),  # the 410 status: list again
    ]
    assert client.opened == ["5", "9", "12"]
    assert sleeps.delays == []


async def test_the_informer_never_gives_up() -> None:
    failures = [ApiError(403, {}, "WATCH"), ApiError(503, {}, "WATCH"), ConnectionResetError()] * 4
    client = FakeClient(
        lists=[([pod("a", "4")], "4")], watches=[*failures, [event("MODIFIED", pod("a", "7"))]]
    )
    sleeps = Sleeps()
    seen = await collect(informer(client, sleeps), 2)
    assert seen == [("ADDED", "a"), ("MODIFIED", "a")]
    assert sleeps.delays == [1.0] * len(failures)
    assert client.opened == ["4"] * (len(failures) + 1)  # resumed from the same version, no re-list


async def test_an_event_whose_handler_fails_is_skipped() -> None:
    client = FakeClient(lists=[([pod("a", "4"), pod("b", "4")], "4")], watches=[])

    async def handler(kind: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "a":
            raise ApiError(0, "connection refused", "GET /x")

    assert await collect(informer(client, Sleeps()), 2, handler) == [("ADDED", "a"), ("ADDED", "b")]


def test_the_watch_policy_waits_a_second_after_any_failure_however_many() -> None:
    assert WATCH_POLICY.delay(1, exc=ValueError("bad JSON")) == 1.0
    assert WATCH_POLICY.delay(10_000, status=403) == 1.0
    assert WATCH_POLICY.delay(3, status=429, headers={"Retry-After": "0"}) == 0.0


async def test_the_informer_over_http_reads_split_json_lines_and_relists_on_a_gone_event() -> None:
    lists = [[pod("a", "4")], [pod("b", "11")]]
    watches: list[str] = []
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            rv = "4" if len(lists) == 2 else "11"
            return web.json_response({"items": lists.pop(0), "metadata": {"resourceVersion": rv}})
        watches.append(request.query["resourceVersion"])
        response = web.StreamResponse()
        await response.prepare(request)
        if len(watches) == 1:
            data = (json.dumps(event("MODIFIED", pod("a", "7"))) + "\n\n" + json.dumps(GONE) + "\n").encode()
            for start in range(0, len(data), 7):  # arbitrary chunk boundaries
                await response.write(data[start : start + 7])
                await asyncio.sleep(0)
        else:
            await release.wait()
        return response

    async with api_server(handler) as url:
        client = KubeClient(url, False, {})
        try:
            seen = await collect(Informer(client, "/api/v1/pods", sleep=Sleeps()), 4)
        finally:
            await client.close()
            release.set()
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    assert watches == ["4", "11"]
