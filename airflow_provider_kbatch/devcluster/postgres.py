"""A throwaway PostgreSQL server: the metadata database of the development Airflow deployment.

``initdb`` in a fresh directory, one database, TCP on loopback only with ``trust``
authentication (no Unix socket), and durability switched off (``fsync``, ``synchronous_commit``,
``full_page_writes``): a crash of the machine loses the database. Right for a test ground,
wrong for anything else.

PostgreSQL refuses to run as root. Started by root, the server (and ``initdb``) run as the
``postgres`` system user that Debian's package creates, else as ``nobody``. That user cannot
enter root's 0700 directories (pytest's temporary directories, ``~/.cache``), so the server's
directory is always a fresh :func:`tempfile.mkdtemp` under the system temporary directory,
handed to that user, and removed by :meth:`PostgresServer.stop`. The clients (``pg_isready``,
``createdb``, ``psql``) connect over TCP and run as the caller.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.ports import free_port

log = logging.getLogger(__name__)

BIN_DIR_ENV = "KBATCH_PG_BIN"
BIN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
USER = "airflow"  # the superuser initdb creates, and the database the deployment uses
DATABASE = "airflow"


class PostgresError(RuntimeError):
    pass


def find_bin_dir(env: Mapping[str, str] = os.environ, pattern: str = BIN_GLOB) -> Path:
    """The server binaries: ``$KBATCH_PG_BIN``, else the newest ``/usr/lib/postgresql/<v>/bin``."""
    if env.get(BIN_DIR_ENV):
        return Path(env[BIN_DIR_ENV])
    found = sorted((Path(p).parent for p in glob.glob(pattern)), key=_major_version)
    if not found:
        raise PostgresError(
            f"no PostgreSQL server binaries ({pattern}): `apt-get install -y postgresql` "
            f"(`make setup` does it), or set {BIN_DIR_ENV} to a directory holding initdb and postgres"
        )
    return found[-1]


def _major_version(bin_dir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); a name that is no version sorts first."""
    try:
        return tuple(int(part) for part in bin_dir.parent.name.split("."))
    except ValueError:
        return ()


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int


def unprivileged_user(euid: int | None = None, lookup: Callable[[str], Any] = pwd.getpwnam) -> RunAs | None:
    """Whom to run the server as: nobody else when not root; ``postgres``, else ``nobody``, as root."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = lookup(name)
        except KeyError:
            continue
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    raise PostgresError("running as root and neither a `postgres` nor a `nobody` user exists")


def server_settings(port: int, *, max_connections: int = 100) -> dict[str, str]:
    """``postgresql.conf`` settings: loopback TCP only, small, not durable."""
    return {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": str(max_connections),
        "shared_buffers": "32MB",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "timezone": "UTC",
        "log_min_messages": "warning",
        "log_connections": "off",
    }


def config_text(settings: Mapping[str, str]) -> str:
    lines = ["# written by airflow_provider_kbatch.devcluster.postgres"]
    lines += [f"{key} = '{value}'" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def sqlalchemy_url(port: int, *, user: str = USER, database: str = DATABASE) -> str:
    return f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"


@dataclass
class PostgresServer:
    """One server in ``root`` (made at :meth:`start` when not given): ``root/data`` and ``root/server.log``."""

    port: int = field(default_factory=free_port)
    root: Path | None = None
    bin_dir: Path = field(default_factory=find_bin_dir)
    run_as: RunAs | None = field(default_factory=unprivileged_user)
    startup_seconds: float | None = field(init=False, default=None)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None, repr=False)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the deployment's database."""
        return sqlalchemy_url(self.port)

    @property
    def data_dir(self) -> Path:
        if self.root is None:
            raise PostgresError("the server has no directory yet: start() makes it")
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "server.log"

    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs to stop the server from another process."""
        return {
            "port": self.port,
            "root": str(self.root) if self.root else None,
            "bin_dir": str(self.bin_dir),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PostgresServer:
        root = Path(state["root"]) if state.get("root") else None
        return cls(port=int(state["port"]), root=root, bin_dir=Path(state["bin_dir"]))

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 90) -> None:
        """initdb, start the server, wait until it accepts connections, create the database."""
        started = time.monotonic()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="kbatch-pg-"))
        if self.run_as is not None:
            os.chown(self.root, self.run_as.uid, self.run_as.gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._as_server_user(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                timeout=timeout,
            )
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(config_text(server_settings(self.port)))
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._server_env(),
                cwd=self.root,
                start_new_session=True,
                **self._user_kwargs(),
            )
        log.info("started PostgreSQL on 127.0.0.1:%s (pid %s, %s)", self.port, self._proc.pid, self.root)
        deadline = time.monotonic() + timeout
        while not self.accepting():
            if self._proc.poll() is not None:
                raise PostgresError(f"postgres exited {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)
        if self.psql(f"select 1 from pg_database where datname = '{DATABASE}'", database="postgres") != "1":
            self._client("createdb", DATABASE, timeout=timeout)
        self.startup_seconds = time.monotonic() - started

    def accepting(self) -> bool:
        return self._client("pg_isready", "-q", check=False, timeout=10).returncode == 0

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (its ``postmaster.pid`` names this data directory)."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError, PostgresError):
            return None
        return pid if str(self.data_dir).encode() in cmdline else None

    def running(self) -> bool:
        return self.pid is not None

    def stop(self, *, grace: float = 20, remove: bool = True) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; remove the directory."""
        pid = self.pid
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if pid is None or not self._signal(pid, sig):
                break
            if self._gone(pid, wait):
                break
        else:
            raise PostgresError(f"postgres (pid {pid}) survived SIGKILL")
        if remove and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------- clients
    def psql(self, sql: str, *, database: str = DATABASE, timeout: float = 60) -> str:
        """Run one statement with ``psql``; its rows unaligned, ``|``-separated, without headers."""
        proc = self._client(
            "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, "-d", database, timeout=timeout
        )
        return proc.stdout.decode().strip()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, PostgresError):
            return "(no server log)"

    # ---------------------------------------------------------------- internals
    def _client(
        self, tool: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.bin_dir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self._server_env())
        if check and proc.returncode != 0:
            raise PostgresError(f"{tool} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        return proc

    def _as_server_user(self, cmd: list[str], *, timeout: float) -> None:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            timeout=timeout,
            env=self._server_env(),
            cwd=self.root,
            **self._user_kwargs(),
        )
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).decode(errors="replace")
            raise PostgresError(f"{Path(cmd[0]).name} exited {proc.returncode}:\n{output}")

    def _user_kwargs(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}

    @staticmethod
    def _server_env() -> dict[str, str]:
        """A small environment of its own: no Airflow settings, no deployment marker."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _signal(self, pid: int, sig: signal.Signals) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not _alive(pid):
                return True
            time.sleep(0.1)
        return False


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie is gone (reaped here when it is a child of this process)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
