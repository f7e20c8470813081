"""A fork server for ``airflow dags test``: Airflow imported and warmed once, a fork per run.

A plain ``airflow dags test`` spends ~11 s of its start on this machine before the first task
runs: ~5 s importing Airflow, the providers and kbatch, and ~6 s building the in-process execution
API (Cadwyn generates its versioned routers on the first request). The e2e suite runs ``dags
test`` dozens of times with one environment, so this server does that work once, in a process
started with that environment, and forks a child per run. The child is ``airflow dags test``
itself: ``airflow.__main__.main`` with the run's argv, in its own session (its pid is its process
group, as with ``start_new_session=True``), with its stdout and stderr on the files the caller
named. Nothing of one run reaches another: each child is a fresh copy of the warmed server, which
never runs a DAG itself.

The server is single-threaded (a fork of a process with threads could copy a held lock), checks
that it has no threads before it serves, and answers each request on its connection: a line with
the child's pid, then, when the child ends, a line with its return code (negative: the signal that
ended it, as ``subprocess`` reports it). Airflow reads its configuration when it is imported, so a
run whose environment differs from the server's is not forked: ``AirflowEnv`` starts it as a
plain process.

    python -m tests.e2e.forkserver SOCKET PARENT_PID   # with the environment every run will have
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def warm_up() -> None:
    """Import and build, once, what every ``dags test`` run would otherwise build itself."""
    import airflow.__main__  # noqa: F401
    from airflow.cli import cli_parser
    from airflow.cli.commands import dag_command  # noqa: F401
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401

    import airflow_provider_kbatch.hooks.preload
    import airflow_provider_kbatch.operators.job
    import airflow_provider_kbatch.sensors.job
    import airflow_provider_kbatch.sensors.output
    import airflow_provider_kbatch.triggers  # noqa: F401

    cli_parser.get_parser()
    ProvidersManager().initialize_providers_configuration()
    app = supervisor.in_process_api_server().app
    if not getattr(app, "_cadwyn_initialized", True):
        app._cadwyn_initialize()


def _run_child(request: dict[str, Any]) -> None:
    """In the forked child: become ``airflow <argv>``; never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err = (
            out
            if request["stderr"] == request["stdout"]
            else os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        )
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(request["cwd"])
        random.seed()  # the child must not replay the server's random sequence
        from airflow import settings

        if getattr(settings, "engine", None) is not None:
            settings.engine.dispose(close=False)  # connections of the server are not ours
        sys.argv = ["airflow", *request["argv"]]
        from airflow.__main__ import main

        try:
            main()
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                sys.stderr.write(f"{exit_.code}\n")
                code = 1
    except BaseException:  # the child's own failure: report it like a crashed process would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class _Server:
    """The select loop: accept requests, fork a child per request, report each child's end."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path + ".tmp")
        self.listener.listen(64)
        os.rename(path + ".tmp", path)  # the socket exists once the server accepts: the caller waits for it
        self.waiting: dict[int, socket.socket] = {}  # child pid -> the connection that asked for it
        self.pending: dict[socket.socket, bytes] = {}  # connections whose request line is incomplete

    def serve(self, parent: int) -> None:
        while os.getppid() == parent:  # the session that started the server ended: so does it
            readable, _, _ = select.select([self.listener, *self.pending], [], [], 0.05)
            for sock in readable:
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    self.pending[conn] = b""
                elif not self._read(sock):
                    return
            self._reap()

    def _read(self, sock: socket.socket) -> bool:
        """Read from a connection; fork when its request is complete. False: asked to stop."""
        chunk = sock.recv(65536)
        if not chunk:
            self.pending.pop(sock)
            sock.close()
            return True
        self.pending[sock] += chunk
        if b"\n" not in self.pending[sock]:
            return True
        request = json.loads(self.pending.pop(sock))
        if request.get("stop"):
            return False
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            for other in [*self.pending, *self.waiting.values()]:
                other.close()
            _run_child(request)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        self.waiting[pid] = sock
        return True

    def _reap(self) -> None:
        while self.waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.waiting.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(OSError):  # the caller went away; the child is reaped all the same
                conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            conn.close()


def serve(path: str, parent: int) -> None:
    warm_up()
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        raise SystemExit(f"forkserver: threads after warm-up ({names}); forking would be unsafe")
    _Server(path).serve(parent)


class ForkedProcess:
    """A run forked by the server, with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, conn: socket.socket, pid: int, args: list[str]) -> None:
        self._conn, self.pid, self.args = conn, pid, args
        self.returncode: int | None = None
        self._buffer = b""

    def _read(self, timeout: float | None) -> None:
        self._conn.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._conn.recv(4096)
                if not chunk:
                    raise AssertionError(f"the fork server went away while {self.args} ran")
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return
        self.returncode = int(json.loads(self._buffer)["returncode"])
        self._conn.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode


def _settings(env: dict[str, str]) -> dict[str, str]:
    """What of an environment matters to a forked run (output buffering does not)."""
    return {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}


class ForkServer:
    """The server process and how to ask it for a run."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.env = dict(env)
        self.spawned = 0  # runs forked so far
        self.socket_path = str(cwd / f"forkserver-{os.getpid()}.sock")
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.forkserver", self.socket_path, str(os.getpid())],
            env={**self.env, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while not Path(self.socket_path).exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self._log.flush()
                raise RuntimeError(
                    f"the fork server did not start:\n{log.read_text(errors='replace')[-4000:]}"
                )
            time.sleep(0.05)

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a run with ``env`` can be forked (Airflow read its configuration at import)."""
        return self.proc.poll() is None and _settings(env) == _settings(self.env)

    def spawn(self, args: list[str], *, cwd: Path, stdout: Path, stderr: Path | None = None) -> ForkedProcess:
        self.spawned += 1
        for path in {stdout, stderr or stdout}:  # empty, and there before the child writes to it
            path.write_bytes(b"")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        request = {"argv": args, "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr or stdout)}
        conn.sendall(json.dumps(request).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = conn.recv(4096)
            if not chunk:
                raise RuntimeError("the fork server closed the connection before forking")
            buffer += chunk
        line, _, rest = buffer.partition(b"\n")
        process = ForkedProcess(conn, int(json.loads(line)["pid"]), ["airflow", *args])
        process._buffer = rest
        return process

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(self.socket_path)
                conn.sendall(b'{"stop": true}\n')
                conn.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        Path(self.socket_path).unlink(missing_ok=True)


def run_forked(
    server: ForkServer, args: list[str], *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(capture_output=True, text=True)`` for a forked run."""
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    out, err = cwd / f".run-{stamp}.out", cwd / f".run-{stamp}.err"
    process = server.spawn(args, cwd=cwd, stdout=out, stderr=err)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    try:
        return subprocess.CompletedProcess(
            ["airflow", *args], code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )
    finally:
        out.unlink(missing_ok=True)
        err.unlink(missing_ok=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
