"""The containers of one pod on the node: one attempt of each, and their processes.

The kubelet's ``kuberuntime_container`` beside its pod worker: ``PodWorker``
(``processnode.pods``) decides when a container runs, restarts or stops; ``PodContainers`` runs
one attempt of it and keeps its process.

- ``launch``: the environment (``podenv``), mounts (``volumes``), user and command line
  (``launch``) of a container. A ``ConfigError`` or ``VolumeError`` (a missing ConfigMap key)
  is waited out as ``CreateContainerConfigError``; a ``LaunchError`` fails the attempt.
- starting: the process, its CRI log (the previous one kept as ``.1``), its pid file and its
  memory limit, at most ``NodeContext.start_limit`` setups at a time. A setup failure (a mount,
  the user) ends the attempt as the kubelet's ``StartError``.
- stopping: SIGTERM to the process group, SIGKILL to the group and its session at the grace
  deadline, which may move while it waits (a second, shorter deletion).
- reaping: what a runtime's PID namespace teardown does (nothing of the container outlives it),
  then the ``Terminated`` state with the exit code, reason and termination message.
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
from airflow_provider_kbatch.devcluster.processnode.podapi import PodApi
from airflow_provider_kbatch.devcluster.processnode.podenv import (
    ConfigError,
    ObjectSource,
    container_env,
    expand_command,
)
from airflow_provider_kbatch.devcluster.processnode.podstatus import (
    ContainerState,
    Terminated,
    exit_code_of,
    exit_reason,
    termination_message,
)
from airflow_provider_kbatch.devcluster.processnode.podsync import PodStatus
from airflow_provider_kbatch.devcluster.processnode.procs import (
    ContainerProcess,
    MemoryWatch,
    read_fd_to_end,
    write_pid_file,
)
from airflow_provider_kbatch.devcluster.processnode.volumes import Volume, VolumeError, container_mounts
from airflow_provider_kbatch.spec.quantity import parse_quantity

log = logging.getLogger(__name__)

RETRY_SETUP_SECONDS = 2.0


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


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep; True when ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except asyncio.TimeoutError:
        return stop.is_set()


class PodContainers:
    """The processes of one pod's containers, by container name, and what they are made from
    (the ConfigMaps and Secrets the pod refers to, its volumes).

    ``pod()`` is the latest pod object (labels and annotations feed the environment);
    ``status.sync()`` is called at every change of a container's state.
    """

    def __init__(
        self,
        ctx: NodeContext,
        pod_dir: Path,
        hostname: str,
        *,
        api: PodApi,
        status: PodStatus,
        pod: Callable[[], dict[str, Any]],
        message_limit: int,
    ) -> None:
        self.ctx = ctx
        self.dir = pod_dir
        self.hostname = hostname
        self.api = api
        self.status = status
        self.pod = pod
        self.message_limit = message_limit
        self.key = f"{api.namespace}/{api.name}"
        self.objects = ObjectSource()
        self.volumes: dict[str, Volume] = {}
        self.procs: dict[str, ContainerProcess] = {}
        self.writers: dict[str, LogWriter] = {}

    async def attempt(
        self,
        st: ContainerState,
        spec: dict[str, Any],
        stop: asyncio.Event,
        deadline: Callable[[], float | None],
    ) -> None:
        """Run ``spec`` once: configure and start it, wait until it exits or ``stop`` is set (then
        stop it by ``deadline()``, monotonic), and record in ``st`` how it ended."""
        proc = await self._start(st, spec, stop)
        if proc is None:
            return
        stopper = asyncio.create_task(stop.wait())
        try:
            waits: set[asyncio.Future[Any]] = {proc.exited, stopper}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if proc.running:
            await self._stop(proc, deadline)
        st.terminated = await self._reap(st, spec, proc)
        log.info("pod %s: %s exited %d", self.key, st.name, st.terminated.exit_code)

    def environment(self, pod: dict[str, Any], spec: dict[str, Any]) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        env["HOSTNAME"] = self.hostname
        env.update(
            container_env(
                pod, spec, self.objects, allocatable=self.ctx.allocatable, service_env=self.ctx.service_env
            )
        )
        return env

    def launch(
        self, pod: dict[str, Any], st: ContainerState, spec: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that start ``spec`` (attempt ``st.restart_count``)."""
        env = self.environment(pod, spec)
        mounts = container_mounts(spec, self.volumes, env)
        identity = identity_for(pod, spec)
        command = expand_command(spec, env)
        mounts.append(self._termination_mount(st, spec))
        env.setdefault("HOME", os.environ.get("HOME", "/root") if identity.uid in (None, 0) else "/")
        if command and "/" not in command[0] and shutil.which(command[0], path=env.get("PATH")) is None:
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

    async def _configure(
        self, st: ContainerState, spec: dict[str, Any], stop: asyncio.Event
    ) -> tuple[list[str], dict[str, str]] | None:
        """The launch argv and environment; waits out configuration errors (missing keys)."""
        while not stop.is_set():
            try:
                return self.launch(self.pod(), st, spec)
            except (ConfigError, VolumeError) as err:
                st.waiting_reason, st.waiting_message = "CreateContainerConfigError", str(err)
                self.api.event("Failed", f"Error: {err}")
                self.status.sync()
                if not await sleep_or_stop(RETRY_SETUP_SECONDS, stop):
                    with contextlib.suppress(ApiError):
                        await self.api.fetch_objects(self.pod(), self.objects)
            except LaunchError as err:
                self._start_error(st, str(err))
                return None
        return None

    def _start_error(self, st: ContainerState, message: str) -> None:
        log.warning("pod %s container %s: cannot start: %s", self.key, st.name, message)
        self.api.event("Failed", f"Error: {message}")
        st.terminated = Terminated(128, "StartError", 0, time.time(), message=message)

    def _termination_path(self, st: ContainerState) -> Path:
        return self.dir / "term" / f"{st.name}.{st.restart_count}"

    def _termination_mount(self, st: ContainerState, spec: dict[str, Any]) -> Mount:
        path = self._termination_path(st)
        path.write_bytes(b"")
        path.chmod(0o666)
        target = spec.get("terminationMessagePath", "/dev/termination-log")
        return Mount(str(path), check_target(target) if target else "", is_file=True)

    def _read_termination_file(self, st: ContainerState) -> bytes:
        try:
            with open(self._termination_path(st), "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4096))
                return f.read()
        except OSError:
            return b""

    def _pid_file(self, st: ContainerState) -> Path:
        return self.dir / "run" / f"{st.name}.pid"

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
        write_pid_file(self._pid_file(st), proc)
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            self.ctx.memory.register(proc, int(parse_quantity(limit)), f"container {st.name} of {self.key}")
        log.info("pod %s: started %s (pid %d)", self.key, st.name, proc.pid)
        self.status.sync()
        return proc

    async def _stop(self, proc: ContainerProcess, deadline: Callable[[], float | None]) -> None:
        """SIGTERM the group; SIGKILL group and session at ``deadline()`` (which may move)."""
        proc.signal(signal.SIGTERM)
        while proc.running:
            at = deadline()
            remaining = (at if at is not None else time.monotonic()) - time.monotonic()
            if remaining <= 0:
                await asyncio.to_thread(proc.kill_everything)
                break
            await asyncio.wait({proc.exited}, timeout=min(remaining, 0.25))

    async def _reap(self, st: ContainerState, spec: dict[str, Any], proc: ContainerProcess) -> Terminated:
        """Once ``proc`` exited: kill what is left of the container, release it, say how it ended."""
        code = await proc.exited
        leftovers = await asyncio.to_thread(proc.kill_everything)
        proc.release()
        if leftovers:
            log.info("pod %s: killed %d leftover processes of %s", self.key, leftovers, st.name)
        await proc.finish_output()
        self.ctx.memory.unregister(proc)
        self._pid_file(st).unlink(missing_ok=True)
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
            limit=self.message_limit,
        )
        assert st.running_since is not None
        return Terminated(
            exit_code=exit_code,
            reason=exit_reason(exit_code, oom=proc.oom_killed),
            started_at=st.running_since,
            finished_at=time.time(),
            signal=sig,
            message=message,
            container_id=st.container_id,
        )

    def kill(
        self, container: str | None, sig: int | None, exit_code: int | None, *, order: Iterable[str]
    ) -> dict[str, Any]:
        """Fault injection: signal a running container (the first running one of ``order`` when
        ``container`` is None), or make it end with ``exit_code``."""
        name = container or next((n for n in order if n in self.procs), None)
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

    async def kill_all(self) -> None:
        for proc in list(self.procs.values()):
            await asyncio.to_thread(proc.kill_everything)

    def remove_files(self) -> Awaitable[None]:
        return asyncio.to_thread(shutil.rmtree, self.dir, True)
