"""The shared watch hub: one watch per key, fanned out, replayed to late subscribers, stopped by
the last one, failing every subscriber together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest

from airflow_provider_kbatch.hooks.shared_watch import (
    WatchHub,
    by_label,
    hub,
    label_equals,
    label_selector_matcher,
)


def obj(name: str, rv: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"u-{name}", "resourceVersion": str(rv), "labels": labels}}


class Source:
    """A scripted watch: the test pushes events; counts how often it was started and stopped."""

    def __init__(self) -> None:
        self.starts = 0
        self.stops = 0
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException | str] = asyncio.Queue()

    def push(self, *items: tuple[str, dict[str, Any]] | BaseException | str) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def __call__(self, on_listed: Callable[[], None]) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        self.starts += 1

        async def events() -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
            try:
                while True:
                    item = await self.queue.get()
                    if item == "listed":
                        on_listed()
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        assert isinstance(item, tuple)
                        yield item
            finally:
                self.stops += 1

        return events()


def named(name: str) -> Callable[[Any], bool]:
    return lambda o: o["metadata"]["name"] == name


async def take(stream: Any, count: int) -> list[tuple[str, str, str]]:
    seen = []
    async for kind, o in stream:
        seen.append((kind, o["metadata"]["name"], o["metadata"]["resourceVersion"]))
        if len(seen) == count:
            break
    return seen


async def test_subscribers_of_one_key_share_one_watch_and_see_only_what_they_select() -> None:
    watches, source = WatchHub(), Source()
    source.push(("ADDED", obj("a", 1)), ("ADDED", obj("b", 2)), "listed", ("MODIFIED", obj("a", 3)))
    a, b = await asyncio.gather(
        take(watches.subscribe("k", source, named("a")), 2),
        take(watches.subscribe("k", source, named("b")), 1),
    )
    assert a == [("ADDED", "a", "1"), ("MODIFIED", "a", "3")]
    assert b == [("ADDED", "b", "2")]
    assert source.starts == 1
    await asyncio.sleep(0)
    assert source.stops == 1 and "k" not in watches.feeds  # the last subscriber stopped it


async def test_a_late_subscriber_first_gets_the_known_objects_and_never_an_older_version() -> None:
    watches, source = WatchHub(), Source()
    source.push(("ADDED", obj("a", 1)), ("ADDED", obj("b", 2)), "listed", ("DELETED", obj("b", 4)))
    first = watches.subscribe("k", source, lambda o: True)
    assert await take(first, 3) == [("ADDED", "a", "1"), ("ADDED", "b", "2"), ("DELETED", "b", "4")]

    async def stale(feed: Any) -> list[tuple[str, dict[str, Any]]]:
        return [("ADDED", obj("a", 0))]  # a direct read older than what the watch knows

    late = watches.subscribe("k", source, lambda o: True, prime=stale)
    source.push(("MODIFIED", obj("a", 5)))
    assert await take(late, 2) == [("ADDED", "a", "1"), ("MODIFIED", "a", "5")]  # b is gone
    await first.aclose()
    assert source.starts == 1


async def test_an_error_that_ends_the_watch_is_raised_in_every_subscriber_and_the_next_starts_anew() -> None:
    watches, source = WatchHub(), Source()
    source.push("listed")

    async def drain(stream: Any) -> None:
        async for _ in stream:
            pass

    one = asyncio.create_task(drain(watches.subscribe("k", source, lambda o: True)))
    two = asyncio.create_task(drain(watches.subscribe("k", source, lambda o: True)))
    await asyncio.sleep(0.01)
    source.push(PermissionError("403 forbidden"))
    for task in (one, two):
        with pytest.raises(PermissionError):
            await task
    assert "k" not in watches.feeds
    source.push(("ADDED", obj("c", 9)))
    assert await take(watches.subscribe("k", source, lambda o: True), 1) == [("ADDED", "c", "9")]
    assert source.starts == 2


async def test_a_cancelled_subscriber_unsubscribes_and_other_keys_are_separate_watches() -> None:
    watches, one, two = WatchHub(), Source(), Source()

    async def drain(stream: Any) -> None:
        async for _ in stream:
            pass

    tasks = [
        asyncio.create_task(drain(watches.subscribe("ns-1", one, lambda o: True))),
        asyncio.create_task(drain(watches.subscribe("ns-2", two, lambda o: True))),
    ]
    await asyncio.sleep(0.01)
    assert set(watches.feeds) == {"ns-1", "ns-2"}
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    await asyncio.sleep(0)
    assert set(watches.feeds) == {"ns-2"} and one.stops == 1 and two.stops == 0
    tasks[1].cancel()
    await asyncio.gather(tasks[1], return_exceptions=True)


async def test_each_event_loop_has_its_own_hub() -> None:
    here = hub()
    assert hub() is here
    other: list[WatchHub] = []
    await asyncio.to_thread(lambda: other.append(asyncio.run(_hub_of_new_loop())))
    assert other[0] is not here


async def _hub_of_new_loop() -> WatchHub:
    return hub()


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1,b", {"a": "1", "b": "x"}, True),
        ("a=1,b", {"a": "1"}, False),
        ("a!=1", {"a": "2"}, True),
        ("a!=1", {"a": "1"}, False),
        ("!a", {}, True),
        ("!a", {"a": ""}, False),
        ("batch.kubernetes.io/controller-uid=u1", {"batch.kubernetes.io/controller-uid": "u2"}, False),
    ],
)
def test_label_selector_matcher(selector: str, labels: dict[str, str], selected: bool) -> None:
    matcher = label_selector_matcher(selector)
    assert matcher is not None
    assert matcher({"metadata": {"labels": labels}}) is selected


def test_set_based_selectors_are_not_matched_here() -> None:
    assert label_selector_matcher("env in (a,b)") is None


def counting(selects: Callable[[Any], bool], calls: list[str]) -> Callable[[Any], bool]:
    def counted(o: Any) -> bool:
        calls.append(o["metadata"]["name"])
        return selects(o)

    return counted


async def test_a_routed_subscriber_is_offered_only_its_routes_objects_and_replayed_only_those() -> None:
    """A thousand waits on one namespace: each event is offered to the waits of its route (a Job's
    name, a pod's controller uid) and to those without one, not to all thousand."""
    watches, source = WatchHub(), Source()
    route = by_label("job")
    source.push(*(("ADDED", obj(f"p{i}", i + 1, job=f"j{i % 3}")) for i in range(6)), "listed")
    calls: list[str] = []
    j0 = watches.subscribe("k", source, counting(lambda o: True, calls), route=route, at="j0")
    assert await take(j0, 2) == [("ADDED", "p0", "1"), ("ADDED", "p3", "4")]
    assert calls == ["p0", "p3"]  # the feed knew the other four: never offered

    late_calls: list[str] = []
    everything = watches.subscribe("k", source, lambda o: True, route=route)  # no route: all
    late = watches.subscribe("k", source, counting(lambda o: True, late_calls), route=route, at="j1")
    assert [name for _, name, _ in await take(everything, 6)] == [f"p{i}" for i in range(6)]
    assert await take(late, 2) == [("ADDED", "p1", "2"), ("ADDED", "p4", "5")]
    source.push(("MODIFIED", obj("p0", 7, job="j0")), ("DELETED", obj("p4", 8, job="j1")))
    assert await take(j0, 1) == [("MODIFIED", "p0", "7")]
    assert await take(late, 1) == [("DELETED", "p4", "8")]
    assert await take(everything, 2) == [("MODIFIED", "p0", "7"), ("DELETED", "p4", "8")]
    assert calls == ["p0", "p3", "p0"] and late_calls == ["p1", "p4", "p4"]  # replays, then a change each

    feed = watches.feeds["k"]
    assert sorted(o["metadata"]["name"] for o in feed.known_at("j1")) == ["p1"]  # p4 deleted
    for stream in (j0, late):
        await stream.aclose()
    assert "k" in watches.feeds  # the one without a route still holds it
    await everything.aclose()
    await asyncio.sleep(0)
    assert "k" not in watches.feeds and source.stops == 1


@pytest.mark.parametrize(
    ("selector", "value"),
    [
        ("batch.kubernetes.io/controller-uid=abc", "abc"),
        ("a=b, batch.kubernetes.io/controller-uid==abc", "abc"),
        ("batch.kubernetes.io/controller-uid!=abc", None),
        ("batch.kubernetes.io/controller-uid", None),
        ("other/controller-uid=abc", None),
    ],
)
def test_label_equals(selector: str, value: str | None) -> None:
    assert label_equals(selector, "batch.kubernetes.io/controller-uid") == value
