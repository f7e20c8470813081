"""Waiting for one Job: the single wait loop used by the trigger (deferrable mode) and by the
operator's synchronous mode (through ``asyncio.run``).

It watches the Job (never polls), reports queueing (``Suspended``), early signals
(``FailureTarget``, ``SuccessCriteriaMet``) and periodic progress, and streams the logs of all
the Job's pods into the task log, each line prefixed by its logical index. Once the Job is
finished, the logs no live stream delivered (a stage shorter than the wait's start-up) are read
before the wait returns (:func:`airflow_provider_kbatch.engine.podlogs.read_unstreamed`). Whether
the Job is finished is decided by :func:`airflow_provider_kbatch.status.job_outcome` and nothing
else.

No Kubernetes client here: all I/O goes through an ``AsyncKbatchHook``-like object.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from airflow_provider_kbatch.engine.indexgrid import progress_attention
from airflow_provider_kbatch.engine.podlogs import (
    FinalRead,
    Log,
    LogBudget,
    containers_of,
    log_label,
    read_unstreamed,
)
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL
from airflow_provider_kbatch.spec.times import time_or_none
from airflow_provider_kbatch.status import (
    JobOutcome,
    creation_order,
    job_outcome,
    logical_index,
    pod_results,
    progress_line,
    slim_pod,
)

# live log streams that may wait for a slot, as a multiple of max_log_streams (see observe_pod)
STREAM_BACKLOG = 4

__all__ = ["Log", "WaitResult", "WaitSettings", "suspended_seconds", "wait_for_job"]


@dataclass(frozen=True)
class WaitSettings:
    """How to wait. JSON-friendly so the trigger can carry it."""

    progress_interval: float = 30.0
    stream_logs: bool = True
    max_log_streams: int = 16
    # all the waits of one event loop (a triggerer holds hundreds) share this many live streams
    process_log_streams: int = 64
    queue_timeout: float | None = None
    log_drain_seconds: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "progress_interval": self.progress_interval,
            "stream_logs": self.stream_logs,
            "max_log_streams": self.max_log_streams,
            "process_log_streams": self.process_log_streams,
            "queue_timeout": self.queue_timeout,
            "log_drain_seconds": self.log_drain_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WaitSettings:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class WaitResult:
    status: Literal["finished", "queue_timeout", "deleted"]
    job: dict[str, Any] | None
    outcome: JobOutcome | None
    queued_seconds: float = 0.0
    signals: list[str] = field(default_factory=list)
    # Job-local index -> the result of a Succeeded pod the wait saw deleted before the Job ended
    # (the pod garbage collector): the final pod read cannot find it. With ``keep``, only those it
    # could not store (``rescued_kept`` counts the stored); never part of the event.
    rescued: dict[int, dict[str, Any]] = field(default_factory=dict)
    rescued_kept: int = 0

    def to_event(self, namespace: str, name: str) -> dict[str, Any]:
        outcome = self.outcome
        return {
            "status": self.status,
            "namespace": namespace,
            "name": name,
            "uid": (self.job or {}).get("metadata", {}).get("uid"),
            "succeeded": bool(outcome and outcome.succeeded),
            "reason": outcome.reason if outcome else None,
            "message": outcome.message if outcome else None,
            "retryable": outcome.retryable if outcome else True,
            "queued_seconds": round(self.queued_seconds, 3),
            "signals": list(self.signals),
        }


# stores the results of deleted pods: (the Job, Job-local index -> result) -> stored?
Keep = Callable[[Mapping[str, Any], Mapping[int, Mapping[str, Any]]], Awaitable[bool]]

_PROCESS_STREAMS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def process_stream_slots(limit: int) -> asyncio.Semaphore:
    """The live log streams all waits of the running event loop share (the first wait's limit):
    a triggerer holding a thousand stages follows at most that many logs at once; what no live
    stream delivered is read once the Job has finished (:func:`read_unstreamed`)."""
    loop = asyncio.get_running_loop()
    slots = _PROCESS_STREAMS.get(loop)
    if slots is None:
        slots = _PROCESS_STREAMS[loop] = asyncio.Semaphore(max(1, limit))
    return slots


def suspended_seconds(job: dict[str, Any], now: float) -> float:
    """How long a suspended Job has been suspended at wall time ``now`` (epoch seconds): from the
    ``Suspended`` condition's ``lastTransitionTime``, or the creation time of a Job created
    suspended that the controller has not marked yet; 0 when unknown. A wait that starts late
    (a triggerer picking the trigger up, a restarted worker adopting) still counts the whole
    queue wait, and ``queue_timeout`` applies to it."""
    status = job.get("status") or {}
    stamp = next(
        (
            c.get("lastTransitionTime")
            for c in status.get("conditions") or ()
            if c.get("type") == "Suspended" and c.get("status") == "True"
        ),
        None,
    )
    if stamp is None and not status.get("startTime"):  # never ran: suspended since it was created
        stamp = (job.get("metadata") or {}).get("creationTimestamp")
    since = time_or_none(stamp)
    return 0.0 if since is None else max(0.0, now - since.timestamp())


class _Watch:
    """State shared by the tasks of one wait."""

    on_progress: Callable[[JobOutcome], None] | None = None  # each progress line (live metrics)
    keep: Keep | None = None  # stores rescued results (see wait_for_job)

    def __init__(
        self,
        hook: Any,
        namespace: str,
        name: str,
        index_map: IndexSet | None,
        settings: WaitSettings,
        log: Log,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.hook, self.namespace, self.name = hook, namespace, name
        self.index_map, self.settings, self.log, self.clock = index_map, settings, log, clock
        self.wall = wall
        self.job: dict[str, Any] | None = None
        self.outcome: JobOutcome | None = None
        self.result: WaitResult | None = None
        self.done = asyncio.Event()
        self.uid = asyncio.get_running_loop().create_future()
        self.queued_since: float | None = None
        self.queued_total = 0.0
        self.signals: list[str] = []
        self.pods: dict[str, dict[str, Any]] = {}
        # every pod the watch reported (slimmed), deleted ones too, but Succeeded ones (observe_pod)
        self.seen: dict[str, dict[str, Any]] = {}
        self.streams: dict[str, asyncio.Task[None]] = {}  # the live (and waiting) streams
        self.stream_started: set[str] = set()  # pods a stream was started for
        self.live: set[str] = set()  # pods whose stream got its slots (the others still queue)
        self.succeeded_seen = 0
        self.streamed: set[tuple[str, str]] = set()  # (pod, container) a live stream delivered lines of
        self.final_read: FinalRead | None = None
        self.stream_slots = asyncio.Semaphore(max(1, settings.max_log_streams))
        self.process_slots = process_stream_slots(settings.process_log_streams)
        self.explained: set[tuple[Any, Any]] = set()
        # Job-local index -> (pod creation order, result) of Succeeded pods deleted while watched
        self.rescued: dict[int, tuple[tuple[str, str], dict[str, Any]]] = {}
        self.rescued_kept = 0
        self.keeping = asyncio.Lock()  # one store at a time: each merges with what the last wrote

    # ------------------------------------------------------------------ job watch
    async def watch_job(self) -> None:
        from airflow_provider_kbatch.errors import JobDeleted

        try:
            async for job in self.hook.watch_job(self.namespace, self.name):
                self.observe_job(job)
                if self.done.is_set():
                    return
        except JobDeleted:
            self.finish("deleted")

    def observe_job(self, job: dict[str, Any]) -> None:
        self.job = job
        outcome = job_outcome(job)
        self.outcome = outcome
        if not self.uid.done():
            self.uid.set_result(job.get("metadata", {}).get("uid"))
        now = self.clock()
        if outcome.suspended and not outcome.finished:
            if self.queued_since is None:  # queued since the suspension, not since this wait began
                self.queued_since = now - suspended_seconds(job, self.wall())
                self.log.info("job %s is queued (suspended), waiting for admission", self.name)
        elif self.queued_since is not None:
            waited = now - self.queued_since
            self.queued_total += waited
            self.queued_since = None
            self.log.info("job %s admitted after %.1fs in the queue", self.name, waited)
        for signal in outcome.early_signals:
            if signal not in self.signals:
                self.signals.append(signal)
                self.log.info("job %s: early signal %s (%s)", self.name, signal, outcome.message or "")
        if outcome.finished:
            self.finish("finished")

    def finish(self, status: Literal["finished", "queue_timeout", "deleted"]) -> None:
        if self.result is None:
            queued = self.queued_total + (
                self.clock() - self.queued_since if self.queued_since is not None else 0.0
            )
            self.result = WaitResult(status, self.job, self.outcome, queued, list(self.signals))
        self.done.set()

    # ------------------------------------------------------------------ progress and queue timeout
    async def tick(self) -> None:
        interval = max(0.5, self.settings.progress_interval)
        timeout = self.settings.queue_timeout
        step = min(interval, 1.0) if timeout else interval
        last_report = self.clock()
        while not self.done.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.done.wait(), timeout=step)
            if self.done.is_set():
                return
            now = self.clock()
            if timeout and self.queued_since is not None and now - self.queued_since >= timeout:
                self.log.warning("job %s still queued after %.0fs (queue_timeout)", self.name, timeout)
                self.finish("queue_timeout")
                return
            if now - last_report >= interval:
                last_report = now
                self.report_progress()
                await self.explain_pending()
                await self.keep_rescued()

    def report_progress(self) -> None:
        if self.outcome is None:
            return
        pending = sum(1 for p in self.pods.values() if p.get("status", {}).get("phase") == "Pending")
        # the Job's status.active counts pods not started yet too: show those as pending only
        running = replace(self.outcome, active=max(0, self.outcome.active - pending))
        # name the indexes that need attention: failed, backing off, retrying (and why)
        attention = progress_attention(self.job, self.seen.values(), self.index_map)
        self.log.info("job %s: %s%s", self.name, progress_line(running, pending=pending), attention)
        if self.on_progress is not None:
            try:
                self.on_progress(running)
            except Exception as err:  # an observer never breaks the wait
                self.log.debug("progress observer failed: %s", err)

    async def explain_pending(self) -> None:
        """Say once why a pod stays Pending (FailedScheduling, FailedMount...), from its Warning events."""
        pending = [p for p in self.pods.values() if p.get("status", {}).get("phase") == "Pending"]
        list_events = getattr(self.hook, "list_events", None)
        if not pending or list_events is None:
            return
        oldest = min(pending, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
        name = oldest.get("metadata", {}).get("name", "")
        try:
            events = await list_events(self.namespace, field_selector=f"involvedObject.name={name}")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # diagnostics are best effort (RBAC may not grant events)
            self.log.debug("no events for pod %s: %s", name, err)
            return
        warnings = [e for e in events if e.get("type") == "Warning"]
        if not warnings:
            return
        last = max(warnings, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        said = (last.get("reason"), last.get("message"))
        if said not in self.explained:
            self.explained.add(said)
            index = logical_index(oldest, self.index_map)
            self.log.warning(
                "job %s: pod %s%s is pending: %s: %s",
                self.name,
                name,
                f" (index {index})" if index is not None else "",
                said[0],
                said[1],
            )

    # ------------------------------------------------------------------ pods and logs
    async def watch_pods(self) -> None:
        uid = await self.uid
        if not uid:
            return
        async for kind, pod in self.hook.watch_pods(self.namespace, f"{CONTROLLER_UID_LABEL}={uid}"):
            self.observe_pod(kind, pod)

    def observe_pod(self, kind: str, pod: dict[str, Any]) -> None:
        """Keep what the progress lines and the final log read need of a pod event.

        At 100,000 indexes the wait must not hold every pod: pods are kept slimmed
        (:func:`~airflow_provider_kbatch.status.slim_pod`), a Succeeded pod is dropped (progress
        needs the pending, live and failed ones; the final read lists the Job's pods again), also
        when it is deleted (its name only, if its log still had to be read), and at most
        ``STREAM_BACKLOG`` times ``max_log_streams`` streams wait for a slot: the logs of pods
        beyond that are read after the Job finished, within its budget."""
        pod_name = pod.get("metadata", {}).get("name", "")
        phase = pod.get("status", {}).get("phase")
        if kind == "DELETED" and phase == "Succeeded":
            # the pod garbage collector deletes tens of thousands at 100,000 indexes: keep its
            # result, and of the pod only what the final log read names ("the pod was deleted")
            self.rescue(pod)
            self.pods.pop(pod_name, None)
            self.seen.pop(pod_name, None)
            if self.settings.stream_logs and any(
                (pod_name, c) not in self.streamed for c in containers_of(pod)
            ):
                self.seen[pod_name] = {**slim_pod(pod), "status": {"phase": phase}}
            return
        if kind == "DELETED" or phase == "Succeeded":
            self.pods.pop(pod_name, None)
        if phase == "Succeeded" and kind != "DELETED":
            self.seen.pop(pod_name, None)
            self.succeeded_seen += 1
        else:
            self.seen[pod_name] = slim = slim_pod(pod)
            if kind != "DELETED":
                self.pods[pod_name] = slim
        if (
            kind != "DELETED"
            and self.settings.stream_logs
            and phase in ("Running", "Succeeded", "Failed")
            and pod_name not in self.stream_started
            and len(self.streams) < STREAM_BACKLOG * max(1, self.settings.max_log_streams)
        ):
            self.stream_started.add(pod_name)
            task = asyncio.create_task(self.stream(slim_pod(pod)))
            self.streams[pod_name] = task
            task.add_done_callback(functools.partial(self._stream_done, pod_name))

    def rescue(self, pod: dict[str, Any]) -> None:
        """Keep the result of a Succeeded pod that is being deleted: the pod garbage collector
        deletes terminated pods beyond ``--terminated-pod-gc-threshold`` (12,500 by default),
        also those of a Job still running, and the result is in the pod alone. Only deleted
        pods are kept, so a stage whose pods stay costs nothing."""
        order = creation_order(pod)
        for local, value in pod_results([pod]).items():
            if local not in self.rescued or self.rescued[local][0] <= order:  # the last created wins
                self.rescued[local] = (order, value)

    async def keep_rescued(self) -> None:
        """Store the rescued results (``keep``) and forget those stored: every progress interval,
        so a wait that ends early (a triggerer restart, a cancelled trigger) loses at most one
        interval's worth, and the wait's memory does not grow with the pods deleted. A failed
        store keeps them for the next try."""
        async with self.keeping:
            if self.keep is None or not self.rescued or self.job is None:
                return
            batch = dict(self.rescued)
            if not await self.keep(self.job, {local: value for local, (_, value) in batch.items()}):
                return
            for local, kept in batch.items():
                if self.rescued.get(local) is kept:  # not replaced by a later pod meanwhile
                    del self.rescued[local]
                    self.rescued_kept += 1

    def _stream_done(self, pod_name: str, _task: asyncio.Task[None]) -> None:
        self.streams.pop(pod_name, None)
        self.live.discard(pod_name)

    async def stream(self, pod: dict[str, Any]) -> None:
        pod_name = pod["metadata"]["name"]
        async with self.stream_slots, self.process_slots:
            self.live.add(pod_name)
            for container in containers_of(pod):
                label = log_label(pod, container, self.index_map)
                try:
                    async for line in self.hook.stream_pod_log(self.namespace, pod_name, container):
                        self.streamed.add((pod_name, container))
                        self.log.info("%s %s", label, line)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # a pod that is gone or not started: logs are best effort
                    self.log.debug("log stream of %s/%s ended: %s", pod_name, container, err)

    async def drain_streams(self) -> None:
        """Let the live streams deliver their last lines (``log_drain_seconds`` at most). A stream
        still queued for a slot is not waited for: the final read takes its pod's log. (Waiting
        for it cost 5 s at the end of each of the stages whose streams a 1,000-stage triggerer
        had queued: event p99 7.5 s, ``benchmarks/triggerloop.py``.)"""
        pending = [t for name, t in self.streams.items() if not t.done() and name in self.live]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.log_drain_seconds)

    async def read_the_rest(self, pod_watch: asyncio.Task[Any]) -> None:
        """After the Job finished: stop the pod watch and the streams still open (what they
        delivered counts as streamed), then read the logs no stream delivered."""
        if not self.settings.stream_logs or self.result is None or self.result.status != "finished":
            return
        uid = (self.job or {}).get("metadata", {}).get("uid")
        if not uid:
            return
        stopping = [pod_watch, *self.streams.values()]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        self.final_read = await read_unstreamed(
            self.hook,
            self.namespace,
            self.name,
            uid,
            streamed=self.streamed,
            seen=self.seen,
            index_map=self.index_map,
            log=self.log,
            budget=LogBudget(concurrency=max(1, self.settings.max_log_streams)),
        )


async def wait_for_job(
    hook: Any,
    namespace: str,
    name: str,
    *,
    index_map: IndexSet | None = None,
    settings: WaitSettings | None = None,
    log: Log | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    on_progress: Callable[[JobOutcome], None] | None = None,
    keep: Keep | None = None,
) -> WaitResult:
    """Watch Job ``namespace/name`` until it finishes, is deleted, or waits in the queue too long.

    ``on_progress`` sees the Job's outcome so far with every progress line (live metrics).
    ``keep(job, results)`` stores the results of Succeeded pods the wait saw deleted (Job-local
    index -> result) and says whether it did: with every progress line, and once more before the
    wait returns (:func:`airflow_provider_kbatch.engine.results.keeper`)."""
    watch = _Watch(
        hook,
        namespace,
        name,
        index_map,
        settings or WaitSettings(),
        log or logging.getLogger(__name__),
        clock,
        wall,
    )
    watch.on_progress = on_progress
    watch.keep = keep
    tasks = [
        asyncio.create_task(watch.watch_job(), name="kbatch-watch-job"),
        asyncio.create_task(watch.tick(), name="kbatch-progress"),
        asyncio.create_task(watch.watch_pods(), name="kbatch-watch-pods"),
        # cancelled with the others on every exit: a failed or cancelled wait must not leave it
        # pending forever (in the triggerer, one leaked task per cancelled trigger)
        asyncio.create_task(watch.done.wait(), name="kbatch-done"),
    ]
    try:
        finished, _ = await asyncio.wait([tasks[0], tasks[3]], return_when=asyncio.FIRST_COMPLETED)
        if tasks[0] in finished and not watch.done.is_set():
            error = tasks[0].exception()
            raise error or RuntimeError(f"the watch of job {namespace}/{name} ended without an outcome")
        await watch.drain_streams()
        await watch.read_the_rest(tasks[2])
        watch.report_progress()
        await watch.keep_rescued()
        if watch.result is not None:
            watch.result.rescued = {local: value for local, (_, value) in watch.rescued.items()}
            watch.result.rescued_kept = watch.rescued_kept
    finally:
        for task in [*tasks, *watch.streams.values()]:
            task.cancel()
        await asyncio.gather(*tasks, *watch.streams.values(), return_exceptions=True)
    assert watch.result is not None, "job watch ended without a result"
    return watch.result
