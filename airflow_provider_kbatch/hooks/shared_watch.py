"""One watch per cluster, namespace and kind in a process, fanned out to every waiter (pure, async).

A triggerer holds hundreds of deferred kbatch stages in one event loop. Each used to open its own
Job watch and pod watch; now all waits on the same cluster and namespace share one resumable
list-then-watch per kind (:func:`~airflow_provider_kbatch.hooks.watch.resumable_watch`: resume
from ``resourceVersion``, one re-list on 410 for everyone, reconnect with backoff), the way the
informers of Argo and Flyte share one watch per resource:

* a :class:`Feed` runs the watch in a task of its own and keeps the last known object of each
  key (uid), so a subscriber that arrives later first gets the current objects it selects
  (``ADDED``), then every change;
* a subscriber selects with a predicate (the Job's name, a pod label selector) evaluated here,
  not by the API server, on the objects of its route only (a Job's name, a pod's controller uid:
  :class:`Feed`); events are queued per subscriber, so a slow one never delays another;
* a subscriber that stops iterating (done, cancelled, failed) unsubscribes; the last one stops
  the watch and the feed is forgotten. An error that ends the watch (403, retries exhausted)
  is raised in every subscriber.

A hub is per event loop: the sync operator's ``asyncio.run`` and each triggerer loop have their
own. Imports neither a Kubernetes client nor Airflow: the hook supplies the watch.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable, Mapping
from contextlib import aclosing
from typing import Any

from airflow_provider_kbatch.hooks.watch import object_key

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
Selector = Callable[[Mapping[str, Any]], bool]
# what an object is addressed by in a feed (Feed.route)
Route = Callable[[Mapping[str, Any]], Hashable]
# starts the watch; calls its argument once each list's objects have been yielded
WatchFactory = Callable[[Callable[[], None]], AsyncGenerator[Event, None]]

__all__ = ["Feed", "WatchHub", "by_label", "by_name", "hub", "label_equals", "label_selector_matcher"]


def _rv(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):  # opaque versions (not etcd revisions): never compared
        return None


class _Stopped:
    """Queued to a subscriber when its feed ended with an error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Subscriber:
    def __init__(self, selects: Selector) -> None:
        self.selects = selects
        self.at: Hashable | None = None  # its route (Feed)
        self.queue: asyncio.Queue[Event | _Stopped] = asyncio.Queue()
        self.versions: dict[str, int] = {}

    def offer(self, kind: str, obj: dict[str, Any]) -> None:
        if not self.selects(obj):
            return
        key, rv = object_key(obj), _rv(obj)
        if kind != "DELETED" and rv is not None:
            seen = self.versions.get(key)
            if seen is not None and rv <= seen:
                return  # already delivered (replayed snapshot, or read directly) or older
            self.versions[key] = rv
        self.queue.put_nowait((kind, obj))


class Feed:
    """One running watch and its subscribers.

    With a ``route`` (what an object is addressed by: a Job's name, a pod's controller uid), an
    event goes only to the subscribers of its route and to those without one, and a new
    subscriber is replayed only its route's objects: a triggerer holding a thousand waits on one
    namespace does not offer every event to all thousand (the burst of a thousand Jobs ending at
    once is on the order of a million predicate calls, by a count of its events)."""

    def __init__(self, hub: WatchHub, key: Hashable, start: WatchFactory, route: Route | None = None) -> None:
        self.hub, self.key, self.route = hub, key, route
        self.known: dict[str, dict[str, Any]] = {}
        self.by_route: dict[Hashable, dict[str, dict[str, Any]]] = {}  # the known, by route
        self.everyone: set[_Subscriber] = set()  # subscribers without a route
        self.routed: dict[Hashable, set[_Subscriber]] = {}
        self.events_seen = 0
        self.listed = asyncio.Event()  # the first list is in ``known`` (or the watch failed)
        self.task = asyncio.create_task(self._run(start), name=f"kbatch-shared-watch {key}")

    @property
    def subscribers(self) -> set[_Subscriber]:
        return self.everyone.union(*self.routed.values())

    def known_at(self, at: Hashable) -> list[dict[str, Any]]:
        """The known objects of route ``at`` (all of them for a feed without routes)."""
        if self.route is None:
            return list(self.known.values())
        return list(self.by_route.get(at, {}).values())

    def _remember(self, kind: str, obj: dict[str, Any]) -> Hashable:
        key = object_key(obj)
        at = self.route(obj) if self.route is not None else None
        if kind == "DELETED":
            self.known.pop(key, None)
            if self.route is not None and (same := self.by_route.get(at)) is not None:
                same.pop(key, None)
                if not same:
                    del self.by_route[at]
        else:
            self.known[key] = obj
            if self.route is not None:
                self.by_route.setdefault(at, {})[key] = obj
        return at

    async def _run(self, start: WatchFactory) -> None:
        try:
            async with aclosing(start(self.listed.set)) as events:
                async for kind, obj in events:
                    self.events_seen += 1
                    at = self._remember(kind, obj)
                    for subscriber in [*self.everyone, *self.routed.get(at, ())]:
                        subscriber.offer(kind, obj)
            raise RuntimeError(f"the shared watch {self.key} ended")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.listed.set()
            self.hub._forget(self)
            for subscriber in self.subscribers:
                subscriber.queue.put_nowait(_Stopped(exc))

    def add(self, selects: Selector, at: Hashable | None = None) -> _Subscriber:
        """A subscriber of the objects ``selects`` accepts, among those of route ``at`` (None:
        every object)."""
        subscriber = _Subscriber(selects)
        routed = self.route is not None and at is not None
        for obj in self.known_at(at) if routed else list(self.known.values()):
            subscriber.offer("ADDED", obj)
        subscriber.at = at if routed else None
        if subscriber.at is None:
            self.everyone.add(subscriber)
        else:
            self.routed.setdefault(subscriber.at, set()).add(subscriber)
        return subscriber

    def remove(self, subscriber: _Subscriber) -> None:
        if subscriber.at is None:
            self.everyone.discard(subscriber)
        elif (same := self.routed.get(subscriber.at)) is not None:
            same.discard(subscriber)
            if not same:
                del self.routed[subscriber.at]
        if not self.everyone and not self.routed:
            self.hub._forget(self)
            self.task.cancel()


class WatchHub:
    """The shared watches of one event loop, by key."""

    def __init__(self) -> None:
        self.feeds: dict[Hashable, Feed] = {}

    def _forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]

    def feed(self, key: Hashable, start: WatchFactory, route: Route | None = None) -> Feed:
        """The running feed of ``key``, started with ``start()`` when there is none."""
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(self, key, start, route)
        return feed

    async def subscribe(
        self,
        key: Hashable,
        start: WatchFactory,
        selects: Selector,
        *,
        prime: Callable[[Feed], Any] | None = None,
        route: Route | None = None,
        at: Hashable | None = None,
    ) -> AsyncIterator[Event]:
        """Yield ``(event type, object)`` for the objects ``selects`` accepts, from the shared
        watch ``key``: the known ones first (``ADDED``), then each change, until the caller stops.

        ``route`` (given by every subscriber of ``key``: the first one's starts the feed) tells
        what an object is addressed by, ``at`` the route of this subscriber's objects; then only
        those are offered to ``selects``. Without ``at``, every object is.

        ``prime(feed)``, when given, is awaited once the feed's first list is known and may
        return events to deliver first (e.g. an object read directly because the watch has not
        reported it yet).
        """
        feed = self.feed(key, start, route)
        subscriber = feed.add(selects, at)
        try:
            if prime is not None:
                await feed.listed.wait()
                for kind, obj in await prime(feed) or ():
                    subscriber.offer(kind, obj)
            while True:
                item = await subscriber.queue.get()
                if isinstance(item, _Stopped):
                    raise item.error
                yield item
        finally:
            feed.remove(subscriber)


_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WatchHub] = weakref.WeakKeyDictionary()


def hub() -> WatchHub:
    """The running event loop's hub."""
    loop = asyncio.get_running_loop()
    found = _HUBS.get(loop)
    if found is None:
        found = _HUBS[loop] = WatchHub()
    return found


def label_selector_matcher(selector: str) -> Selector | None:
    """A predicate for an equality / existence label selector (``a=b,c==d,e,!f,g!=h``); None for
    set-based ones (``in``, ``notin``), which the caller then watches on its own."""
    terms: list[tuple[str, str, str | None]] = []  # (operator, key, value)
    for raw in filter(None, (part.strip() for part in selector.split(","))):
        if " in " in raw or " notin " in raw or "(" in raw:
            return None
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in raw:
            key, value = raw.replace("==", "=").split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif raw.startswith("!"):
            terms.append(("absent", raw[1:].strip(), None))
        else:
            terms.append(("present", raw, None))

    def selects(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for operator, key, value in terms:
            if operator == "=" and labels.get(key) != value:
                return False
            if operator == "!=" and labels.get(key) == value:
                return False
            if operator == "absent" and key in labels:
                return False
            if operator == "present" and key not in labels:
                return False
        return True

    return selects


def label_equals(selector: str, key: str) -> str | None:
    """The value label ``key`` must equal under ``selector`` (``key=v`` or ``key==v``), or None."""
    for raw in (part.strip() for part in selector.split(",")):
        name, eq, value = raw.replace("==", "=").partition("=")
        if eq and not name.endswith("!") and name.strip() == key:
            return value.strip()
    return None


def by_label(key: str) -> Route:
    """The route of objects addressed by their label ``key``."""

    def route(obj: Mapping[str, Any]) -> Hashable:
        return ((obj.get("metadata") or {}).get("labels") or {}).get(key)

    return route


def by_name(obj: Mapping[str, Any]) -> Hashable:
    """The route of objects addressed by their name."""
    return (obj.get("metadata") or {}).get("name")
