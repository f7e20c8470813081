"""One pod's life on the process node: volumes, init containers, containers, restarts,
termination and deletion.

A ``PodWorker`` is an asyncio task per pod. It decides; two parts act for it: ``PodContainers``
(``processnode.containers``) launches, starts, stops and reaps the processes, ``PodStatus``
(``processnode.podsync``) renders the pod's status and patches it, coalesced, until it lands.

Stopping (deletion, ``activeDeadlineSeconds``, node shutdown, a force delete) sends SIGTERM to each
container's process group, waits until the grace deadline (which a later, shorter deletion can
bring forward) and SIGKILLs the group and its whole session. A deleted pod is then reported in a
terminal phase and deleted with grace 0, as the kubelet does; the Job controller (>= 1.31) waits
for that terminal phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.containerlogs import LogWriter
from airflow_provider_kbatch.devcluster.processnode.containers import (
    RETRY_SETUP_SECONDS,
    NodeContext,
    PodContainers,
    sleep_or_stop,
)
from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError
from airflow_provider_kbatch.devcluster.processnode.podapi import PodApi
from airflow_provider_kbatch.devcluster.processnode.podenv import ConfigError
from airflow_provider_kbatch.devcluster.processnode.podstatus import (
    Backoff,
    ContainerState,
    Terminated,
    lost_container,
    message_budget,
    parse_rfc3339,
    pod_phase,
    reported_states,
    should_restart,
)
from airflow_provider_kbatch.devcluster.processnode.podsync import PodStatus
from airflow_provider_kbatch.devcluster.processnode.procs import ContainerProcess
from airflow_provider_kbatch.devcluster.processnode.volumes import (
    VolumeContext,
    VolumeError,
    prepare_volumes,
    remove_pod_volumes,
)

__all__ = ["NodeContext", "PodWorker"]

log = logging.getLogger(__name__)

DEFAULT_GRACE = 30
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _grace(pod: dict[str, Any]) -> float:
    value = pod["spec"].get("terminationGracePeriodSeconds")
    return float(DEFAULT_GRACE if value is None else value)


def _started_or_over(st: ContainerState, task: asyncio.Task[None]) -> Callable[[], bool]:
    return lambda: st.running or task.done()


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy") or "Always"
        self.init_specs: list[dict[str, Any]] = list(spec.get("initContainers") or [])
        self.specs: list[dict[str, Any]] = list(spec["containers"])
        first_wait = "PodInitializing" if self.init_specs else "ContainerCreating"
        self.init_states = [
            ContainerState(
                c["name"],
                c.get("image", ""),
                init=True,
                sidecar=c.get("restartPolicy") == "Always",
                waiting_reason="PodInitializing",
            )
            for c in self.init_specs
        ]
        self.states = [
            ContainerState(c["name"], c.get("image", ""), waiting_reason=first_wait) for c in self.specs
        ]
        self.stopping = asyncio.Event()
        self.sidecar_stop = asyncio.Event()
        self.stop_reason: str | None = None
        self.kill_deadline: float | None = None
        self.done = asyncio.Event()
        self.backoff = Backoff(ctx.restart_backoff, ctx.restart_backoff_cap)
        self.api = PodApi(ctx.client, pod)
        self.status = PodStatus(self.api, pod, self.restart_policy, self.init_states, self.states)
        self.containers = PodContainers(
            ctx,
            self.dir,
            (spec.get("hostname") or self.name)[:63],
            api=self.api,
            status=self.status,
            pod=lambda: self.pod,
            message_limit=message_budget(len(self.states) + len(self.init_states)),
        )
        self._sidecar_tasks: list[asyncio.Task[None]] = []
        self._delete_sent = False
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ inputs from the node
    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gone(self) -> bool:
        """The pod object is gone from the API (force deletion, or finalized)."""
        return self.status.gone

    @property
    def procs(self) -> dict[str, ContainerProcess]:
        return self.containers.procs

    @property
    def writers(self) -> dict[str, LogWriter]:
        return self.containers.writers

    def observe(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod object (from the watch)."""
        self.pod = pod
        meta = pod["metadata"]
        self.status.generation = meta.get("generation")
        if not meta.get("deletionTimestamp"):
            return
        if not self.done.is_set():
            self.request_stop("deleted", float(meta.get("deletionGracePeriodSeconds") or 0))
        elif not self._delete_sent:
            task = asyncio.create_task(self._finalize_deletion())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def forget(self) -> None:
        """The pod object is gone from the API (force deletion, or finalized)."""
        self.status.gone = True
        self.request_stop("gone", 0)

    def request_stop(self, reason: str, grace: float) -> None:
        if self.done.is_set():
            return
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("stopping pod %s (%s, grace %.0fs)", self.key, reason, grace)
            if self.procs:
                names = ", ".join(sorted(self.procs))
                self.api.event("Killing", f"Stopping container {names} ({reason})", kind="Normal")
        deadline = time.monotonic() + max(0.0, grace)
        if self.kill_deadline is None or deadline < self.kill_deadline:
            self.kill_deadline = deadline
        self.stopping.set()
        self.sidecar_stop.set()

    # ------------------------------------------------------------------ the lifecycle
    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("pod %s: the process node failed running it", self.key)
            await self.containers.kill_all()
            await self._report_crash(err)
        finally:
            self.done.set()

    async def _report_crash(self, err: Exception) -> None:
        """A bug in the node must not leave the pod Pending forever: report it Failed."""
        now = time.time()
        for st in self.init_states + self.states:
            if st.terminated is None:
                st.terminated = Terminated(
                    128, "StartError", st.running_since or 0, now, message=repr(err)[:1024]
                )
        self.status.final_phase = "Failed"
        self.status.message = f"the process node failed running this pod: {err!r}"[:1024]
        self.status.sync()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.status.flush(), timeout=10)

    async def _run(self) -> None:
        status = self.pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            self.status.final_phase = status["phase"]
            await self._finalize_deletion()
            return
        reported = reported_states(status)
        if any(state.get("running") or state.get("terminated") for state in reported.values()):
            self._lost(status.get("startTime"), reported)
        else:
            await self._live()
        if self.status.sandbox or self.status.final_phase:
            await asyncio.to_thread(remove_pod_volumes, self.dir)
        self.status.sync()
        await self.status.flush()
        log.info("pod %s: %s", self.key, self.status.final_phase)
        await self._finalize_deletion()

    async def _live(self) -> None:
        started = (self.pod.get("status") or {}).get("startTime")
        self.status.start_time = parse_rfc3339(started) if started else time.time()
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        (self.dir / "term").mkdir(exist_ok=True)
        self.status.sync()
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        watcher = asyncio.create_task(self._deadline(float(deadline))) if deadline else None
        try:
            if await self._prepare() and await self._run_init():
                await self._run_main()
            await self._stop_sidecars()
        finally:
            if watcher is not None:
                watcher.cancel()
        self._finish_states()

    def _lost(self, start_time: str | None, reported: dict[str, dict[str, Any]]) -> None:
        """Found started after a node restart: its processes are gone. Report it failed."""
        self.status.start_time = parse_rfc3339(start_time) if start_time else time.time()
        now = time.time()
        for st in self.init_states + self.states:
            st.terminated = lost_container(reported.get(st.name, {}), now)
        self.status.final_phase = "Failed"
        self.status.message = "the process node restarted while the pod ran"

    async def _prepare(self) -> bool:
        """Fetch what the pod refers to and create its volumes; retried until it works or stops."""
        while not self.stopping.is_set():
            try:
                await self.api.fetch_objects(self.pod, self.containers.objects)
                ctx = VolumeContext(
                    pod=self.pod,
                    pod_dir=self.dir,
                    objects=self.containers.objects,
                    claim_paths=await self.api.claim_paths(self.pod),
                    tokens=await self.api.tokens(self.pod),
                    allocatable=self.ctx.allocatable,
                )
                self.containers.volumes = await asyncio.to_thread(prepare_volumes, ctx)
                self.status.sandbox = True
                return True
            except (VolumeError, ConfigError, ApiError, OSError) as err:
                log.warning("pod %s: volumes not ready: %s", self.key, err)
                self.api.event("FailedMount", str(err))
                for st in self.states + self.init_states:
                    st.waiting_message = f"FailedMount: {err}"
                self.status.sync()
                await sleep_or_stop(RETRY_SETUP_SECONDS, self.stopping)
        return False

    async def _run_init(self) -> bool:
        for st, spec in zip(self.init_states, self.init_specs, strict=True):
            if self.stopping.is_set():
                return False
            if st.sidecar:
                task = asyncio.create_task(self._container_loop(st, spec, self.sidecar_stop))
                self._sidecar_tasks.append(task)
                await self._wait_until(_started_or_over(st, task))
                continue
            await self._container_loop(st, spec, self.stopping)
            if not st.succeeded:
                return False
        for st in self.states:
            st.waiting_reason = "ContainerCreating"
        return True

    async def _run_main(self) -> None:
        await asyncio.gather(
            *(
                self._container_loop(st, spec, self.stopping)
                for st, spec in zip(self.states, self.specs, strict=True)
            )
        )

    async def _stop_sidecars(self) -> None:
        if not self._sidecar_tasks:
            return
        if self.kill_deadline is None:
            self.kill_deadline = time.monotonic() + _grace(self.pod)
        self.sidecar_stop.set()
        await asyncio.gather(*self._sidecar_tasks)

    def _finish_states(self) -> None:
        terminal = self.stop_reason is not None
        now = time.time()
        for st in self.init_states + self.states:
            if st.terminated is None and st.last_terminated is not None:
                st.terminated = st.last_terminated
            elif st.terminated is None and terminal:
                st.terminated = Terminated(
                    137,
                    "ContainerStatusUnknown",
                    0,
                    now,
                    message="The container could not be located when the pod was terminated",
                )
        self.status.final_phase = pod_phase(
            self.restart_policy, self.init_states, self.states, terminal=terminal
        )
        if self.stop_reason == "shutdown":
            self.status.reason, self.status.message = "Terminated", SHUTDOWN_MESSAGE
            self.status.extra_conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": SHUTDOWN_MESSAGE,
                }
            )

    async def _deadline(self, seconds: float) -> None:
        assert self.status.start_time is not None
        await asyncio.sleep(max(0.0, self.status.start_time + seconds - time.time()))
        self.status.reason, self.status.message = "DeadlineExceeded", DEADLINE_MESSAGE
        self.api.event("DeadlineExceeded", DEADLINE_MESSAGE, kind="Normal")
        self.request_stop("deadline", _grace(self.pod))

    async def _finalize_deletion(self) -> None:
        """A deleted pod that reached a terminal phase is removed with grace 0 (the kubelet's job)."""
        if self.gone or not self.pod["metadata"].get("deletionTimestamp") or self.stop_reason == "shutdown":
            return
        if self._delete_sent:
            return
        self._delete_sent = True
        await self.api.delete_now()

    # ------------------------------------------------------------------ containers
    async def _container_loop(self, st: ContainerState, spec: dict[str, Any], stop: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            if not first:
                st.restart_count += 1
            first = False
            await self.containers.attempt(st, spec, stop, lambda: self.kill_deadline)
            self.status.sync()
            if stop.is_set() or not should_restart(st, self.restart_policy):
                return
            delay = self.backoff.next_delay(st.name)
            self.api.event("BackOff", f"Back-off restarting failed container {st.name} in pod {self.name}")
            st.restarting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={st.name} "
                f"pod={self.name}_{self.namespace}({self.uid})",
            )
            self.status.sync()
            if await sleep_or_stop(delay, stop):
                return

    # ------------------------------------------------------------------ waiting helpers
    async def _wait_until(self, check: Callable[[], bool]) -> None:
        while not check() and not self.stopping.is_set():
            changed = self.status.changed
            stopper = asyncio.create_task(self.stopping.wait())
            ticker = asyncio.create_task(changed.wait())
            try:
                await asyncio.wait({stopper, ticker}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                ticker.cancel()

    # ------------------------------------------------------------------ for the kubelet endpoints
    def container_names(self) -> Iterable[str]:
        return [s.name for s in self.init_states + self.states]

    def is_running(self, container: str) -> bool:
        return container in self.procs

    def kill(self, container: str | None, sig: int | None, exit_code: int | None) -> dict[str, Any]:
        """Fault injection: signal a running container, or make it end with ``exit_code``."""
        order = [s.name for s in self.states + self.init_states]
        return self.containers.kill(container, sig, exit_code, order=order)

    def remove_files(self) -> Awaitable[None]:
        return self.containers.remove_files()
