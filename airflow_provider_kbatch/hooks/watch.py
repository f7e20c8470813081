"""The resumable watch loop behind ``AsyncKbatchHook.watch_job`` / ``watch_pods`` (pure, async).

The loop follows the Kubernetes list-then-watch contract (as kopf's ``watching.py`` does):

1. list (``list_fn``) -> the current objects and the list's ``resourceVersion``; report them;
2. watch from that ``resourceVersion`` (``open_fn``), with bookmarks and a server-side timeout
   (the hook adds a client-side timeout); every event moves the ``resourceVersion`` on, BOOKMARK
   events included, and every ADDED / MODIFIED / DELETED event is reported;
3. when the server ends the watch normally, watch again from the last ``resourceVersion``;
4. on 410 Gone (HTTP status or an ERROR event with code 410), list again (step 1); objects
   that vanished meanwhile are reported as DELETED (their last known state);
5. on a transient error (connection reset, timeout, 429, 5xx) reconnect from the last
   ``resourceVersion`` after the :class:`RetryPolicy` backoff; give up (raise) when the policy
   does, or on any other error.

``asyncio.CancelledError`` is never caught; the stream context is exited (the response closed)
whenever the consumer stops iterating. The sleep and the clock are injected.

Imports neither a Kubernetes client nor Airflow: the hook supplies ``list_fn`` and ``open_fn``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from airflow_provider_kbatch.errors import api_error
from airflow_provider_kbatch.hooks.retry import RetryPolicy, http_status

log = logging.getLogger(__name__)

ListFn = Callable[[], Awaitable[tuple[list[dict[str, Any]], str]]]
# what of each watched object is kept and reported (a new dict)
Keep = Callable[[Mapping[str, Any]], dict[str, Any]]
OpenFn = Callable[[str], AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]]

# A watch that ends normally faster than this, with no event at all, counts as a failed attempt
# (backoff before reconnecting) so that a server closing watches at once is not hammered.
MIN_HEALTHY_WATCH_SECONDS = 1.0


class _Relist(Exception):
    """Internal: the resourceVersion expired (410); list again."""


def object_key(obj: Mapping[str, Any]) -> str:
    """An object's identity across events: its uid, else namespace/name."""
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _rv(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion") or None


class _State:
    """The last known objects and resourceVersion of one watch; of each watched object, what
    ``keep`` picks (all of it by default)."""

    def __init__(self, keep: Keep = dict) -> None:
        self.resource_version: str | None = None
        self.known: dict[str, dict[str, Any]] = {}
        self.keep = keep

    def relisted(
        self, items: list[dict[str, Any]], resource_version: str
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events that bring a consumer from the last known state to a fresh list."""
        events: list[tuple[str, dict[str, Any]]] = []
        fresh = {object_key(item): item for item in items}
        for key, gone in self.known.items():
            if key not in fresh:
                events.append(("DELETED", gone))
        for key, item in fresh.items():
            old = self.known.get(key)
            if old is None:
                events.append(("ADDED", item))
            elif _rv(old) != _rv(item):
                events.append(("MODIFIED", item))
        self.known = fresh
        self.resource_version = resource_version or None
        return events

    def apply(self, event: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """Record one watch event; return what to report (None for a bookmark)."""
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            status = obj.get("code")
            if status == 410:
                raise _Relist()
            raise api_error(status if isinstance(status, int) else None, obj.get("reason"), obj)
        self.resource_version = _rv(obj) or self.resource_version
        if kind == "BOOKMARK":
            return None
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            log.debug("ignoring watch event of type %s", kind)
            return None
        kept = self.keep(obj)  # a new dict (dict, or what watched_pod picks)
        if kind == "DELETED":
            self.known.pop(object_key(obj), None)
        else:
            self.known[object_key(obj)] = kept
        return str(kind), dict(kept)


async def _pause_or_raise(
    policy: RetryPolicy,
    failures: int,
    exc: Exception,
    sleep: Callable[[float], Awaitable[object]],
    what: str,
    resource_version: str | None,
) -> None:
    """Sleep the policy's backoff for a transient error, or raise a permanent one (or the last)."""
    pause = policy.delay(failures, exc=exc)
    if pause is None:
        raise exc
    log.warning("%s (%s); retrying in %.2fs from resourceVersion %s", what, exc, pause, resource_version)
    await sleep(pause)


async def resumable_watch(
    list_fn: ListFn,
    open_fn: OpenFn,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_listed: Callable[[], object] = lambda: None,
    keep: Keep = dict,
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """Yield ``(event type, object)`` forever: ADDED / MODIFIED / DELETED, resumed and re-listed.

    ``keep`` picks what of each watched object is kept and reported (``list_fn`` is expected to
    return objects picked the same way): a watch of 100,000 pods must not hold them whole.

    The consumer ends the watch by leaving its ``async for`` (or cancelling). Transient errors of
    ``list_fn`` (after the caller's own retries) are retried with ``policy`` like the watch's;
    others (e.g. ``JobDeleted``, 403) propagate. ``on_listed`` is called after the events of
    each list have been yielded (a shared watch knows then that its snapshot is complete).
    """
    state = _State(keep)
    failures = 0
    while True:
        if state.resource_version is None:
            try:
                items, resource_version = await list_fn()
            except Exception as exc:
                # A re-list right after the API server came back (410 on resume) can still meet a
                # refused connection: same backoff budget as the watch itself.
                failures += 1
                await _pause_or_raise(policy, failures, exc, sleep, "list for the watch failed", None)
                continue
            for listed in state.relisted(items, resource_version):
                yield listed
            on_listed()
            if state.resource_version is None:
                raise ValueError("the list response carried no resourceVersion to watch from")
        started, seen = clock(), 0
        try:
            async with open_fn(state.resource_version) as events:
                async for event in events:
                    reported = state.apply(event)
                    seen += 1
                    failures = 0
                    if reported is not None:
                        yield reported
        except _Relist:
            log.info("watch resourceVersion %s expired (410); listing again", state.resource_version)
            state.resource_version = None
            continue
        except Exception as exc:
            if http_status(exc) == 410:
                log.info("watch resourceVersion %s expired (410); listing again", state.resource_version)
                state.resource_version = None
                continue
            failures += 1
            await _pause_or_raise(policy, failures, exc, sleep, "watch interrupted", state.resource_version)
            continue
        if seen == 0 and clock() - started < MIN_HEALTHY_WATCH_SECONDS:
            failures += 1
            await sleep(policy.backoff(failures))
        log.debug("watch ended normally; resuming from resourceVersion %s", state.resource_version)
