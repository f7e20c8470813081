"""One pod's life on the process node: volumes, init containers, containers, restarts, status,
termination and deletion.

A ``PodWorker`` is an asyncio task per pod. Status goes to the ``pods/status`` subresource as a
strategic merge patch (conditions merge by type, so the scheduler's ``PodScheduled`` and the API
server's ``DisruptionTarget`` stay) carrying ``metadata.uid`` (a pod recreated under the same name
is never patched by a stale worker). Patches coalesce: while one is in flight, later changes are
sent together, and a failed patch is retried until it lands or the pod is gone.

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
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.containerlogs import LogWriter, log_path
from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError, KubeClient
from airflow_provider_kbatch.devcluster.processnode.launch import (
    LaunchError,
    Mount,
    Tools,
    check_target,
    identity_for,
    launch_argv,
)
from airflow_provider_kbatch.devcluster.processnode.podapi import PodApi, PodGone
from airflow_provider_kbatch.devcluster.processnode.podenv import (
    ConfigError,
    ObjectSource,
    container_env,
    expand_command,
)
from airflow_provider_kbatch.devcluster.processnode.podstatus import (
    Backoff,
    ContainerState,
    Terminated,
    exit_code_of,
    exit_reason,
    message_budget,
    parse_rfc3339,
    pod_conditions,
    pod_phase,
    rfc3339,
    stamp_conditions,
    termination_message,
)
from airflow_provider_kbatch.devcluster.processnode.procs import (
    ContainerProcess,
    MemoryWatch,
    read_fd_to_end,
    write_pid_file,
)
from airflow_provider_kbatch.devcluster.processnode.volumes import (
    Volume,
    VolumeContext,
    VolumeError,
    container_mounts,
    prepare_volumes,
    remove_pod_volumes,
)
from airflow_provider_kbatch.spec.quantity import parse_quantity

log = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
RETRY_SETUP_SECONDS = 2.0
DEFAULT_GRACE = 30
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


@dataclass
class NodeContext:
    """What every pod worker shares."""

    client: KubeClient
    state_dir: Path
    tools: Tools
    allocatable: dict[str, str]
    service_env: dict[str, str]
    base_env: dict[str, str]
    restart_backoff: float = 10.0
    restart_backoff_cap: float = 300.0
    working_dir: str = "/"
    start_limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    memory: MemoryWatch = field(default_factory=MemoryWatch)

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"


def _grace(pod: dict[str, Any]) -> float:
    value = pod["spec"].get("terminationGracePeriodSeconds")
    return float(DEFAULT_GRACE if value is None else value)


def _is_started(status: dict[str, Any]) -> bool:
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    return any(
        (s.get("state") or {}).get("running") or (s.get("state") or {}).get("terminated") for s in statuses
    )


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
        self.hostname = (spec.get("hostname") or self.name)[:63]
        self.procs: dict[str, ContainerProcess] = {}
        self.writers: dict[str, LogWriter] = {}
        self.stopping = asyncio.Event()
        self.sidecar_stop = asyncio.Event()
        self.stop_reason: str | None = None
        self.kill_deadline: float | None = None
        self.final_phase: str | None = None
        self.status_reason: str | None = None
        self.status_message: str | None = None
        self.extra_conditions: list[dict[str, Any]] = []
        self.start_time: float | None = None
        self.sandbox = False
        self.gone = False
        self.done = asyncio.Event()
        self.objects = ObjectSource()
        self.volumes: dict[str, Volume] = {}
        self.backoff = Backoff(ctx.restart_backoff, ctx.restart_backoff_cap)
        self.api = PodApi(ctx.client, pod)
        self._version = 0
        self._synced = 0
        self._sync_task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._sidecar_tasks: list[asyncio.Task[None]] = []
        self._delete_sent = False
        self._background: set[asyncio.Task[None]] = set()
        self._conditions_sent = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

    # ------------------------------------------------------------------ inputs from the node
    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def observe(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod object (from the watch)."""
        self.pod = pod
        meta = pod["metadata"]
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
        self.gone = True
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
            await self._stop_processes()
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
        self.final_phase = "Failed"
        self.status_message = f"the process node failed running this pod: {err!r}"[:1024]
        self.sync()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=10)

    async def _run(self) -> None:
        status = self.pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            self.final_phase = status["phase"]
            await self._finalize_deletion()
            return
        if _is_started(status):
            self._lost(status)
        else:
            await self._live()
        if self.sandbox or self.final_phase:
            await asyncio.to_thread(remove_pod_volumes, self.dir)
        self.sync()
        await self.flush()
        log.info("pod %s: %s", self.key, self.final_phase)
        await self._finalize_deletion()

    async def _live(self) -> None:
        started = (self.pod.get("status") or {}).get("startTime")
        self.start_time = parse_rfc3339(started) if started else time.time()
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        (self.dir / "term").mkdir(exist_ok=True)
        self.sync()
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

    def _lost(self, status: dict[str, Any]) -> None:
        """Found running after a node restart: its processes are gone. Report it failed."""
        self.start_time = parse_rfc3339(status["startTime"]) if status.get("startTime") else time.time()
        now = time.time()
        previous = {
            s["name"]: s.get("state") or {}
            for s in list(status.get("initContainerStatuses") or [])
            + list(status.get("containerStatuses") or [])
        }
        for st in self.init_states + self.states:
            state = previous.get(st.name, {})
            if state.get("terminated"):
                done = state["terminated"]
                st.terminated = Terminated(
                    int(done.get("exitCode", 0)),
                    done.get("reason") or "",
                    parse_rfc3339(done["startedAt"]) if done.get("startedAt") else 0,
                    parse_rfc3339(done["finishedAt"]) if done.get("finishedAt") else now,
                    message=done.get("message") or "",
                )
                continue
            started = (state.get("running") or {}).get("startedAt")
            st.terminated = Terminated(
                137,
                "Error",
                parse_rfc3339(started) if started else 0,
                now,
                message="the process node restarted; the container's processes were killed",
            )
        self.final_phase = "Failed"
        self.status_message = "the process node restarted while the pod ran"

    async def _prepare(self) -> bool:
        """Fetch what the pod refers to and create its volumes; retried until it works or stops."""
        while not self.stopping.is_set():
            try:
                await self.api.fetch_objects(self.pod, self.objects)
                ctx = VolumeContext(
                    pod=self.pod,
                    pod_dir=self.dir,
                    objects=self.objects,
                    claim_paths=await self.api.claim_paths(self.pod),
                    tokens=await self.api.tokens(self.pod),
                    allocatable=self.ctx.allocatable,
                )
                self.volumes = await asyncio.to_thread(prepare_volumes, ctx)
                self.sandbox = True
                return True
            except (VolumeError, ConfigError, ApiError, OSError) as err:
                log.warning("pod %s: volumes not ready: %s", self.key, err)
                self.api.event("FailedMount", str(err))
                for st in self.states + self.init_states:
                    st.waiting_message = f"FailedMount: {err}"
                self.sync()
                await self._sleep_or_stop(RETRY_SETUP_SECONDS, self.stopping)
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
        self.final_phase = pod_phase(self.restart_policy, self.init_states, self.states, terminal=terminal)
        if self.stop_reason == "shutdown":
            self.status_reason, self.status_message = "Terminated", SHUTDOWN_MESSAGE
            self.extra_conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": SHUTDOWN_MESSAGE,
                }
            )

    async def _deadline(self, seconds: float) -> None:
        assert self.start_time is not None
        await asyncio.sleep(max(0.0, self.start_time + seconds - time.time()))
        self.status_reason, self.status_message = "DeadlineExceeded", DEADLINE_MESSAGE
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
    def _should_restart(self, st: ContainerState) -> bool:
        if st.sidecar:
            return True
        if st.terminated is None:
            return False
        failed = st.terminated.exit_code != 0
        if st.init:
            return failed and self.restart_policy != "Never"
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and failed)

    async def _container_loop(self, st: ContainerState, spec: dict[str, Any], stop: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            if not first:
                st.restart_count += 1
            first = False
            proc = await self._start(st, spec, stop)
            if proc is not None:
                await self._await_exit(st, spec, proc, stop)
            self.sync()
            if stop.is_set() or not self._should_restart(st):
                return
            delay = self.backoff.next_delay(st.name)
            self.api.event("BackOff", f"Back-off restarting failed container {st.name} in pod {self.name}")
            st.restarting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={st.name} "
                f"pod={self.name}_{self.namespace}({self.uid})",
            )
            self.sync()
            if await self._sleep_or_stop(delay, stop):
                return

    def _env(self, spec: dict[str, Any]) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        env["HOSTNAME"] = self.hostname
        env.update(
            container_env(
                self.pod,
                spec,
                self.objects,
                allocatable=self.ctx.allocatable,
                service_env=self.ctx.service_env,
            )
        )
        return env

    def _start_error(self, st: ContainerState, message: str) -> None:
        log.warning("pod %s container %s: cannot start: %s", self.key, st.name, message)
        self.api.event("Failed", f"Error: {message}")
        st.terminated = Terminated(128, "StartError", 0, time.time(), message=message)

    async def _configure(
        self, st: ContainerState, spec: dict[str, Any], stop: asyncio.Event
    ) -> tuple[list[str], dict[str, str]] | None:
        """The launch argv and environment; waits out configuration errors (missing keys)."""
        while not stop.is_set():
            try:
                env = self._env(spec)
                mounts = container_mounts(spec, self.volumes, env)
                identity = identity_for(self.pod, spec)
                command = expand_command(spec, env)
                mounts.append(self._termination_mount(st, spec))
                env.setdefault("HOME", os.environ.get("HOME", "/root") if identity.uid in (None, 0) else "/")
                if (
                    command
                    and "/" not in command[0]
                    and shutil.which(command[0], path=env.get("PATH")) is None
                ):
                    raise LaunchError(f'exec: "{command[0]}": executable file not found in $PATH')
                argv = launch_argv(
                    self.ctx.tools,
                    command,
                    [m for m in mounts if m.target],
                    workdir=spec.get("workingDir") or self.ctx.working_dir,
                    hostname=self.hostname,
                    identity=identity,
                )
                return argv, env
            except (ConfigError, VolumeError) as err:
                st.waiting_reason, st.waiting_message = "CreateContainerConfigError", str(err)
                self.api.event("Failed", f"Error: {err}")
                self.sync()
                if not await self._sleep_or_stop(RETRY_SETUP_SECONDS, stop):
                    with contextlib.suppress(ApiError):
                        await self.api.fetch_objects(self.pod, self.objects)
            except LaunchError as err:
                self._start_error(st, str(err))
                return None
        return None

    def _termination_mount(self, st: ContainerState, spec: dict[str, Any]) -> Mount:
        path = self.dir / "term" / f"{st.name}.{st.restart_count}"
        path.write_bytes(b"")
        path.chmod(0o666)
        target = spec.get("terminationMessagePath", "/dev/termination-log")
        return Mount(str(path), check_target(target) if target else "", is_file=True)

    async def _start(
        self, st: ContainerState, spec: dict[str, Any], stop: asyncio.Event
    ) -> ContainerProcess | None:
        configured = await self._configure(st, spec, stop)
        if configured is None:
            return None
        argv, env = configured
        current = log_path(self.dir, st.name)
        if st.restart_count and current.exists():
            current.replace(log_path(self.dir, st.name, previous=True))
        writer = LogWriter(current)
        read_end, write_end = os.pipe()
        async with self.ctx.start_limit:
            try:
                proc = ContainerProcess(argv, env, writer, write_end)
            except OSError as err:
                os.close(read_end)
                writer.close()
                self._start_error(st, str(err))
                return None
            finally:
                os.close(write_end)
            setup_error = (await read_fd_to_end(read_end)).decode("utf-8", "replace").strip()
        self.procs[st.name] = proc
        self.writers[st.name] = writer
        if setup_error:
            await proc.exited
            await proc.finish_output()
            self.procs.pop(st.name, None)
            self._start_error(st, setup_error)
            return None
        proc.note_namespace()
        st.running_since = time.time()
        st.container_id = f"kbatch://{proc.pid}-{st.restart_count}"
        st.waiting_message = ""
        write_pid_file(self.dir / "run" / f"{st.name}.pid", proc)
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            self.ctx.memory.register(proc, int(parse_quantity(limit)), f"container {st.name} of {self.key}")
        log.info("pod %s: started %s (pid %d)", self.key, st.name, proc.pid)
        self.sync()
        return proc

    async def _await_exit(
        self, st: ContainerState, spec: dict[str, Any], proc: ContainerProcess, stop: asyncio.Event
    ) -> None:
        stopper = asyncio.create_task(stop.wait())
        try:
            waits: set[asyncio.Future[Any]] = {proc.exited, stopper}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if proc.running:
            await self._terminate(proc)
        code = await proc.exited
        # What a runtime's PID namespace teardown does: nothing of the container outlives it.
        leftovers = await asyncio.to_thread(proc.kill_everything)
        proc.release()
        if leftovers:
            log.info("pod %s: killed %d leftover processes of %s", self.key, leftovers, st.name)
        await proc.finish_output()
        self.ctx.memory.unregister(proc)
        (self.dir / "run" / f"{st.name}.pid").unlink(missing_ok=True)
        self.procs.pop(st.name, None)
        exit_code, sig = exit_code_of(code)
        if proc.exit_override is not None:
            exit_code, sig = proc.exit_override, None
        if proc.oom_killed:
            exit_code = 137
        message = termination_message(
            self._read_termination_file(st),
            spec.get("terminationMessagePolicy") or "File",
            exit_code,
            proc.logs.tail_text(),
            limit=message_budget(len(self.states) + len(self.init_states)),
        )
        assert st.running_since is not None
        st.terminated = Terminated(
            exit_code=exit_code,
            reason=exit_reason(exit_code, oom=proc.oom_killed),
            started_at=st.running_since,
            finished_at=time.time(),
            signal=sig,
            message=message,
            container_id=st.container_id,
        )
        log.info("pod %s: %s exited %d", self.key, st.name, exit_code)

    def _read_termination_file(self, st: ContainerState) -> bytes:
        path = self.dir / "term" / f"{st.name}.{st.restart_count}"
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4096))
                return f.read()
        except OSError:
            return b""

    async def _terminate(self, proc: ContainerProcess) -> None:
        """SIGTERM the group; SIGKILL group and session at the (movable) grace deadline."""
        proc.signal(signal.SIGTERM)
        while proc.running:
            deadline = self.kill_deadline if self.kill_deadline is not None else time.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await asyncio.to_thread(proc.kill_everything)
                break
            await asyncio.wait({proc.exited}, timeout=min(remaining, 0.25))

    async def _stop_processes(self) -> None:
        for proc in list(self.procs.values()):
            await asyncio.to_thread(proc.kill_everything)

    # ------------------------------------------------------------------ waiting helpers
    async def _sleep_or_stop(self, seconds: float, stop: asyncio.Event) -> bool:
        """Sleep; True when ``stop`` was set meanwhile."""
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
            return True
        except asyncio.TimeoutError:
            return stop.is_set()

    async def _wait_until(self, check: Callable[[], bool]) -> None:
        while not check() and not self.stopping.is_set():
            tick = self._tick
            stopper = asyncio.create_task(self.stopping.wait())
            ticker = asyncio.create_task(tick.wait())
            try:
                await asyncio.wait({stopper, ticker}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                ticker.cancel()

    # ------------------------------------------------------------------ status
    def phase(self) -> str:
        if self.final_phase is not None:
            return self.final_phase
        return pod_phase(self.restart_policy, self.init_states, self.states)

    def status_body(self, now: float) -> dict[str, Any]:
        phase = self.phase()
        conditions = pod_conditions(phase, self.init_states, self.states, sandbox=self.sandbox)
        generation = self.pod["metadata"].get("generation")
        stamped = stamp_conditions(list(conditions) + self.extra_conditions, self._conditions_sent, now)
        if generation is not None:
            for cond in stamped:
                cond["observedGeneration"] = generation
        self._conditions_sent.update({c["type"]: c for c in stamped})
        body: dict[str, Any] = {
            "phase": phase,
            "conditions": stamped,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "containerStatuses": [s.as_status() for s in self.states],
        }
        if generation is not None:
            body["observedGeneration"] = generation
        if self.start_time is not None:
            body["startTime"] = rfc3339(self.start_time)
        if self.init_states:
            body["initContainerStatuses"] = [s.as_status() for s in self.init_states]
        if self.status_reason:
            body["reason"] = self.status_reason
        if self.status_message:
            body["message"] = self.status_message
        return body

    def sync(self) -> None:
        """Schedule a status update (coalesced with any in flight)."""
        self._version += 1
        self._tick.set()
        self._tick = asyncio.Event()
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop())

    async def flush(self) -> None:
        """Return once the latest status reached the API server (or the pod is gone)."""
        while self._synced < self._version and not self.gone:
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(self._sync_loop())
            await asyncio.shield(self._sync_task)

    async def _sync_loop(self) -> None:
        delay = 0.2
        while self._synced < self._version and not self.gone:
            version = self._version
            try:
                await self.api.patch_status(self.status_body(time.time()))
                self._synced = version
                delay = 0.2
            except PodGone:
                log.info("pod %s is gone; no more status updates", self.key)
                self.gone = True
            except ApiError as err:
                log.warning("pod %s: status update failed (%s); retrying", self.key, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    # ------------------------------------------------------------------ for the kubelet endpoints
    def container_names(self) -> Iterable[str]:
        return [s.name for s in self.init_states + self.states]

    def is_running(self, container: str) -> bool:
        return container in self.procs

    def kill(self, container: str | None, sig: int | None, exit_code: int | None) -> dict[str, Any]:
        """Fault injection: signal a running container, or make it end with ``exit_code``."""
        name = container or next(
            (s.name for s in self.states + self.init_states if s.name in self.procs), None
        )
        proc = self.procs.get(name or "")
        if name is None or proc is None:
            running = sorted(self.procs)
            raise LookupError(
                f"pod {self.key}: container {container or '(any)'} is not running (running: {running})"
            )
        if exit_code is not None:
            proc.exit_override = exit_code
            sig = signal.SIGKILL
        sig = sig if sig is not None else signal.SIGKILL
        proc.signal(sig)
        log.info("fault: sent signal %d to %s of %s (pid %d)", sig, name, self.key, proc.pid)
        return {
            "pod": self.key,
            "container": name,
            "pid": proc.pid,
            "signal": int(sig),
            "exit_code": exit_code,
        }

    def remove_files(self) -> Awaitable[None]:
        return asyncio.to_thread(shutil.rmtree, self.dir, True)
