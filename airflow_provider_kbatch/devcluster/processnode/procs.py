"""Container processes on the event loop, without threads.

Each container is started with ``Popen(start_new_session=True)``: its own session and process
group. Its exit is noticed through a pidfd on the event loop; at that moment (before reaping, so
the id cannot be reused) the rest of its process group is SIGKILLed, as a runtime tears down a
container's PID namespace when its main process ends. Output pipes are read non-blocking into the
container's ``LogWriter``.

``kill_session`` scans ``/proc`` for processes of a session that changed process group, used when
the node stops a container or sweeps leftovers of a previous run (recorded in pid files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_kbatch.devcluster.processnode.containerlogs import LogWriter

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    session: int
    rss_pages: int
    start_ticks: int


def _parse_stat(pid: int, text: str) -> ProcStat | None:
    rest = text.rsplit(")", 1)[-1].split()
    if len(rest) < 22 or rest[0] == "Z":
        return None
    # Field n of proc(5) is rest[n - 3]: pgrp 5, session 6, starttime 22, rss 24.
    return ProcStat(pid, int(rest[2]), int(rest[3]), int(rest[21]), int(rest[19]))


def proc_stat(pid: int) -> ProcStat | None:
    try:
        return _parse_stat(pid, Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError):
        return None


def all_procs() -> Iterator[ProcStat]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None:
                yield stat


def mount_namespace(pid: int | str) -> tuple[int, int] | None:
    """(device, inode) of a process's mount namespace."""
    try:
        st = os.stat(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def kill_session(session: int, sig: int = signal.SIGKILL, *, mount_ns: tuple[int, int] | None = None) -> int:
    """Signal every live process of ``session`` or, when given, of the mount namespace ``mount_ns``
    (a container's own: catches processes that left its session); returns how many."""
    count = 0
    me = os.getpid()
    for stat in all_procs():
        if stat.pid == me:
            continue
        if stat.session == session or (mount_ns is not None and mount_namespace(stat.pid) == mount_ns):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(stat.pid, sig)
                count += 1
    return count


def killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


async def read_fd_to_end(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until every writer closed it; closes ``fd``."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return b"".join(chunks)


class ContainerProcess:
    """One running container command."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], logs: LogWriter, setup_fd: int) -> None:
        self.logs = logs
        self._loop = asyncio.get_running_loop()
        self._popen = subprocess.Popen(
            list(argv),
            stdin=setup_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        self.pid = self._popen.pid
        stat = proc_stat(self.pid)
        self.start_ticks = stat.start_ticks if stat else 0
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self.output_done: asyncio.Future[None] = self._loop.create_future()
        self.oom_killed = False
        self.exit_override: int | None = None
        self.mount_ns: tuple[int, int] | None = None
        self._ns_fd: int | None = None
        self._open_streams = 0
        assert self._popen.stdout is not None and self._popen.stderr is not None
        for stream, pipe in (("stdout", self._popen.stdout), ("stderr", self._popen.stderr)):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._open_streams += 1
            self._loop.add_reader(fd, self._pump, fd, stream, pipe)
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    def _pump(self, fd: int, stream: str, pipe: object) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.logs.write(stream, data)
            return
        self._loop.remove_reader(fd)
        pipe.close()  # type: ignore[attr-defined]
        self._open_streams -= 1
        if self._open_streams == 0 and not self.output_done.done():
            self.output_done.set_result(None)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        # Still a zombie: the group id cannot have been reused. Take the rest of the group down.
        killpg(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code
        if not self.exited.done():
            self.exited.set_result(code)

    @property
    def running(self) -> bool:
        return not self.exited.done()

    def signal(self, sig: int) -> bool:
        """Signal the container's process group (all of its processes)."""
        if not self.running:
            return False
        return killpg(self.pid, sig)

    def note_namespace(self) -> None:
        """Remember the container's mount namespace (call once its setup is over).

        An open descriptor keeps the namespace alive: the kernel reuses the inode number of a
        freed namespace at once, and a sweep by number would then hit another container.
        """
        try:
            fd = os.open(f"/proc/{self.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == mount_namespace("self"):
            os.close(fd)
            return
        self._ns_fd = fd
        self.mount_ns = (st.st_dev, st.st_ino)

    def release(self) -> None:
        """Let go of the mount namespace (after the last sweep)."""
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None
            self.mount_ns = None

    def kill_everything(self) -> int:
        """SIGKILL the group, then every process of the session or of the container's mount
        namespace, wherever its group or session went. Blocking (scans /proc)."""
        if self.running:
            killpg(self.pid, signal.SIGKILL)
        return kill_session(self.pid, mount_ns=self.mount_ns)

    async def finish_output(self, timeout: float = 5.0) -> None:
        """Wait until the pipes are drained (a process that escaped the session may hold them)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.output_done), timeout)
        except asyncio.TimeoutError:
            log.warning("output of pid %s still open after exit; closing it", self.pid)
            for pipe in (self._popen.stdout, self._popen.stderr):
                if pipe is not None and not pipe.closed:
                    self._loop.remove_reader(pipe.fileno())
                    pipe.close()
        self.logs.close()


def write_pid_file(path: Path, proc: ContainerProcess) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{proc.pid} {proc.start_ticks}\n")


def sweep_pid_files(root: Path) -> int:
    """Kill sessions recorded in ``*.pid`` files under ``root`` whose leader still runs (same start
    time); remove the files. For leftovers of a node that died without cleaning up."""
    killed = 0
    for pid_file in root.glob("*/run/*.pid"):
        try:
            pid_text, ticks_text = pid_file.read_text().split()
            pid, ticks = int(pid_text), int(ticks_text)
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        stat = proc_stat(pid)
        if stat is None or stat.start_ticks == ticks:  # else the id now belongs to someone else
            killed += killpg(pid, signal.SIGKILL)
            killed += kill_session(pid)
        pid_file.unlink(missing_ok=True)
    return killed


def group_rss(pgids: set[int]) -> dict[int, int]:
    """Resident memory in bytes per process group, for the groups asked about (one /proc scan)."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = dict.fromkeys(pgids, 0)
    for stat in all_procs():
        if stat.pgrp in out:
            out[stat.pgrp] += stat.rss_pages * page
    return out


class MemoryWatch:
    """Enforces ``limits.memory``: the resident memory of a container's process group is checked
    every ``interval`` seconds; above the limit the group is SIGKILLed and the container reported
    ``OOMKilled`` (exit code 137). No cgroups: this is a polling approximation."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._procs: dict[int, tuple[ContainerProcess, int, str]] = {}

    def register(self, proc: ContainerProcess, limit: int, what: str) -> None:
        self._procs[proc.pid] = (proc, limit, what)

    def unregister(self, proc: ContainerProcess) -> None:
        self._procs.pop(proc.pid, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self._procs:
                continue
            usage = group_rss(set(self._procs))
            for pid, (proc, limit, what) in list(self._procs.items()):
                if proc.running and usage.get(pid, 0) > limit:
                    log.warning(
                        "%s uses %d bytes > limit %d: killing it (OOMKilled)", what, usage[pid], limit
                    )
                    proc.oom_killed = True
                    proc.signal(signal.SIGKILL)
                    self.unregister(proc)
