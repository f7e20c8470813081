"""A real Airflow 3 deployment for end-to-end tests: api-server, scheduler (LocalExecutor),
dag-processor and triggerer as separate processes, in an isolated ``AIRFLOW_HOME`` on SQLite,
with the repo's ``dags/`` folder and the local cluster's connection.

Use it from a test module::

    from tests.e2e.scheduler import airflow_scheduler  # noqa: F401

    @pytest.mark.timeout(900)  # the first test using it pays for the start-up
    def test_something(airflow_scheduler, devcluster):
        airflow_scheduler.wait_dag("my_dag")
        backfill_id = airflow_scheduler.backfill("my_dag", "2026-01-01", "2026-01-05", conf={...})
        airflow_scheduler.unpause("my_dag")
        runs = airflow_scheduler.wait_runs("my_dag", 5, backfill_id=backfill_id, timeout=300)

Importing the fixture into two test modules gives each its own deployment (pytest makes one
fixture definition per module): once a second module needs it, import it in a conftest instead.

Deliberate choices:

* ``[scheduler] use_job_schedule = False``: the scheduler creates no runs from the timetable (nor
  from assets), so unpausing a ``@daily`` DAG does not add a run of its own; only the runs a test
  creates (backfill, ``dags trigger``) exist. Pass ``use_job_schedule=True`` to
  :class:`AirflowScheduler` for a deployment that schedules.
* ``[core] parallelism = 4``: LocalExecutor worker processes are few on a 2-core machine.
* ``[workers] min_heartbeat_interval = 1``: see the comment where it is set (a deferral race).
* SQLite (Airflow puts it in WAL mode) with a 60 s lock wait, and ``BEGIN IMMEDIATE`` in the CLI
  commands the tests run: see :meth:`AirflowScheduler._write_sqlite_settings`.
* Every process the deployment starts carries a marker in its environment. Task processes run
  in process groups of their own (the task supervisor calls ``setpgid``) and may be re-parented
  when their parent dies, so teardown finds them by that marker as well as by process group and
  by parentage: SIGTERM, a grace period, SIGKILL, and an error if anything is still alive.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster.ports import free_port

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
MARKER_ENV = "KBATCH_E2E_AIRFLOW_DEPLOYMENT"


# Imported by Airflow (``airflow_local_settings`` on PYTHONPATH): its names replace those of
# ``airflow.settings``, here the engine factory, to begin SQLite transactions IMMEDIATE.
_LOCAL_SETTINGS = """\
from __future__ import annotations

import os

from sqlalchemy import create_engine, event


def create_metadata_engine(sql_alchemy_conn, *, engine_args, connect_args):
    engine = create_engine(sql_alchemy_conn, connect_args=connect_args, **engine_args)
    if engine.dialect.name == "sqlite" and os.environ.get("KBATCH_E2E_SQLITE_BEGIN_IMMEDIATE") == "1":

        @event.listens_for(engine, "connect")
        def _driver_begins_nothing(dbapi_connection, connection_record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
"""


def _parse_time(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    parsed = datetime.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Run:
    """One DAG run as recorded in the metadata database."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    logical_date: datetime.datetime | None
    start_date: datetime.datetime | None
    end_date: datetime.datetime | None
    backfill_id: int | None
    conf: Any

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_RUN_STATES


@dataclass
class AirflowScheduler:
    """An Airflow deployment of separate processes sharing one ``AIRFLOW_HOME``.

    ``start()`` migrates the database, starts the four components and waits until the api-server
    reports all of them healthy; ``stop()`` leaves no process behind.
    """

    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 4
    use_job_schedule: bool = False
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    startup_seconds: float | None = field(init=False, default=None)
    stop_seconds: float | None = field(init=False, default=None)
    killed: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.marker = secrets.token_hex(8)
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(self.extra_env)
        env.update(
            {
                MARKER_ENV: self.marker,
                "AIRFLOW_HOME": str(self.home),
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(REPO), str(self.home / "pyconf"), env.get("PYTHONPATH", "")) if p
                ),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "kbatch_e2e_sqlite.CONNECT_ARGS",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "kbatch_e2e_sqlite.ASYNC_CONNECT_ARGS",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.use_job_schedule),
                # The task supervisor notices its task process exited on its next wake-up, which
                # can be min_heartbeat_interval (5 s) late; the scheduler then sees a deferring
                # task's "success" only after the trigger already resumed it, and fails it as
                # "state changed externally" (apache/airflow#72716, open in 3.3). 1 s makes that
                # window small; the bug itself is Airflow's.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        self.env = env

    # ---------------------------------------------------------------- paths
    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def component_log(self, component: str) -> Path:
        return self.home / f"{component}.out"

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 240) -> None:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_sqlite_settings()
        self.run("db", "migrate", timeout=timeout, immediate=False)
        for component in COMPONENTS:
            args = [component]
            if component in ("scheduler", "triggerer"):
                args.append("--skip-serve-logs")
            out = self.component_log(component).open("ab")
            self.procs[component] = subprocess.Popen(
                [self._airflow, *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
        remaining = timeout - (time.monotonic() - started)
        self._wait(self._healthy, timeout=max(remaining, 10), what="all components healthy")
        self.startup_seconds = time.monotonic() - started

    def _write_sqlite_settings(self) -> None:
        """SQLite settings that make four daemons and a CLI writing to one file reliable.

        * A 60 s lock wait instead of pysqlite's 5 s: a loaded 2-core machine holds a write
          transaction longer than 5 s now and then.
        * ``BEGIN IMMEDIATE`` for every transaction of the short CLI commands run by :meth:`run`
          (not ``db migrate``, not the daemons). A deferred transaction that read first and then
          writes fails at once with "database is locked" (no waiting) when another process
          committed in between; this made ``airflow backfill create`` fail half-way while the
          scheduler was busy. An immediate transaction takes the write lock up front and waits.
          The daemons keep deferred transactions: they open nested sessions, which would wait on
          their own process's lock. Airflow itself sets WAL mode.
        """
        package = self.home / "pyconf"
        package.mkdir(exist_ok=True)
        (package / "kbatch_e2e_sqlite.py").write_text(
            'CONNECT_ARGS = {"timeout": 60}\nASYNC_CONNECT_ARGS = {"timeout": 60}\n'
        )
        (package / "airflow_local_settings.py").write_text(_LOCAL_SETTINGS)

    def stop(self, *, grace: float = 20) -> None:
        """Stop everything: SIGTERM the components (they stop their own workers), then SIGTERM
        their process groups and every process left, and SIGKILL what is still alive after
        ``grace`` seconds in all. Raises if anything survives that."""
        import psutil

        stopping = time.monotonic()
        victims = self._processes()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        alive = _wait_gone(victims, grace / 2, reap=self.procs.values())
        alive = list({p.pid: p for p in [*alive, *self._processes()]}.values())
        if alive:
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for victim in alive:
                with contextlib.suppress(psutil.Error):
                    victim.send_signal(signal.SIGTERM)
            alive = _wait_gone(alive, grace / 2, reap=self.procs.values())
        # late children and orphans re-parented while we waited
        alive = list({p.pid: p for p in [*alive, *self._processes()]}.values())
        self.killed = [f"{p.pid} {_cmdline(p)}" for p in alive]
        for victim in alive:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        _wait_gone(alive, 10, reap=self.procs.values())
        left = [f"{p.pid} {_cmdline(p)}" for p in self._processes()]
        self.stop_seconds = time.monotonic() - stopping
        if left:
            raise RuntimeError("Airflow processes survived SIGKILL:\n" + "\n".join(left))
        if self.killed:
            warnings.warn(
                f"Airflow processes ignored SIGTERM for {grace}s and were killed: {self.killed}", stacklevel=2
            )

    def _processes(self) -> list[Any]:
        """Every live process started by this deployment: by marker, process group and parentage."""
        import psutil

        found: dict[int, psutil.Process] = {}
        for proc in self.procs.values():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
                found[root.pid] = root
                found.update({c.pid: c for c in root.children(recursive=True)})
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get(MARKER_ENV) == self.marker:
                    found[proc.pid] = proc
            except psutil.Error:
                continue
        return [p for p in found.values() if _alive(p)]

    # ---------------------------------------------------------------- CLI
    @property
    def _airflow(self) -> str:
        return str(Path(sys.executable).parent / "airflow")

    def run(
        self, *args: str, timeout: float = 300, check: bool = True, immediate: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``airflow <args>`` against this deployment's home and database (SQLite transactions
        ``BEGIN IMMEDIATE`` unless ``immediate=False``: see :meth:`_write_sqlite_settings`)."""
        env = {**self.env, "KBATCH_E2E_SQLITE_BEGIN_IMMEDIATE": "1" if immediate else "0"}
        proc = subprocess.run(
            [self._airflow, *args],
            env=env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                f"--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def unpause(self, dag_id: str) -> None:
        self.run("dags", "unpause", dag_id)

    def pause(self, dag_id: str) -> None:
        self.run("dags", "pause", dag_id)

    def backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        conf: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        reprocess_behavior: str | None = None,
        run_backwards: bool = False,
    ) -> int:
        """``airflow backfill create``; returns the id of the backfill it created."""
        before = self._last_backfill_id(dag_id)
        args = ["backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date]
        if conf is not None:
            args += ["--dag-run-conf", json.dumps(conf)]
        if max_active_runs is not None:
            args += ["--max-active-runs", str(max_active_runs)]
        if reprocess_behavior is not None:
            args += ["--reprocess-behavior", reprocess_behavior]
        if run_backwards:
            args.append("--run-backwards")
        proc = self.run(*args)
        after = self._last_backfill_id(dag_id)
        if after is None or after == before:
            raise AssertionError(
                f"airflow backfill create made no backfill:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return after

    # ---------------------------------------------------------------- metadata database
    def db(self) -> sqlite3.Connection:
        """A read-only connection: the test never holds a write lock on the scheduler's database."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = self.db()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def _last_backfill_id(self, dag_id: str) -> int | None:
        rows = self.query("select max(id) from backfill where dag_id=?", dag_id)
        return rows[0][0] if rows else None

    def backfill_completed(self, backfill_id: int) -> bool:
        """The scheduler marks a backfill completed once all its runs finished (a DAG allows one
        backfill at a time: create the next only after this)."""
        rows = self.query("select completed_at from backfill where id=?", backfill_id)
        return bool(rows) and rows[0][0] is not None

    def dag_parsed(self, dag_id: str) -> bool:
        rows = self.query("select is_stale from dag where dag_id=? and bundle_name is not null", dag_id)
        return bool(rows) and not rows[0][0]

    def import_errors(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.query("select filename, stacktrace from import_error")}

    def wait_dag(self, dag_id: str, *, timeout: float = 120) -> None:
        """Wait until the dag-processor has put ``dag_id`` in the database."""
        self._wait(lambda: self.dag_parsed(dag_id), timeout=timeout, what=f"DAG {dag_id} parsed")

    def runs(self, dag_id: str, *, run_type: str | None = None, backfill_id: int | None = None) -> list[Run]:
        sql = (
            "select dag_id, run_id, state, run_type, logical_date, start_date, end_date, backfill_id, conf "
            "from dag_run where dag_id=?"
        )
        params: list[Any] = [dag_id]
        if run_type is not None:
            sql += " and run_type=?"
            params.append(run_type)
        if backfill_id is not None:
            sql += " and backfill_id=?"
            params.append(backfill_id)
        rows = self.query(sql + " order by logical_date, id", *params)
        return [
            Run(
                dag_id=r[0],
                run_id=r[1],
                state=r[2],
                run_type=r[3],
                logical_date=_parse_time(r[4]),
                start_date=_parse_time(r[5]),
                end_date=_parse_time(r[6]),
                backfill_id=r[7],
                conf=_json(r[8]),
            )
            for r in rows
        ]

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str | None, int]]:
        """(task_id, map_index) -> (state, try_number)."""
        rows = self.query(
            "select task_id, map_index, state, try_number from task_instance where dag_id=? and run_id=?",
            dag_id,
            run_id,
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        rows = self.query(
            "select value from xcom where dag_id=? and run_id=? and task_id=? and key=? and map_index=?",
            dag_id,
            run_id,
            task_id,
            key,
            map_index,
        )
        if not rows:
            return None
        value = _json(rows[0][0])
        return _json(value) if isinstance(value, str) else value

    def wait_runs(
        self,
        dag_id: str,
        count: int,
        *,
        timeout: float = 300,
        run_type: str | None = None,
        backfill_id: int | None = None,
    ) -> list[Run]:
        """Wait until ``count`` runs exist and all are finished (success or failed); return them.

        Fails early when a component died; on timeout the message holds every run's state, its task
        states and the tails of the component and task logs.
        """

        def check() -> list[Run] | None:
            self.assert_running()
            runs = self.runs(dag_id, run_type=run_type, backfill_id=backfill_id)
            if len(runs) >= count and all(r.finished for r in runs):
                return runs
            return None

        try:
            return self._wait(check, timeout=timeout, interval=1.0, what=f"{count} finished runs of {dag_id}")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.report(dag_id)}") from None

    # ---------------------------------------------------------------- logs and diagnostics
    def task_logs(self, dag_id: str, run_id: str | None = None, task_id: str | None = None) -> str:
        """The task log files of a DAG (optionally one run / one task), concatenated with headers."""
        base = self.log_dir / f"dag_id={dag_id}"
        pattern = f"run_id={run_id or '*'}/task_id={task_id or '*'}/**/*.log"
        parts = [
            f"=== {p.relative_to(self.log_dir)}\n{p.read_text(errors='replace')}"
            for p in sorted(base.glob(pattern))
        ]
        return "\n".join(parts)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {c} ({self.component_log(c)})\n{_tail(self.component_log(c), lines)}" for c in COMPONENTS
        )

    def report(self, dag_id: str, lines: int = 30) -> str:
        out = [f"runs of {dag_id}:"]
        for run in self.runs(dag_id):
            out.append(f"  {run.run_id} {run.state} start={run.start_date} end={run.end_date}")
            for (task_id, map_index), (state, tries) in sorted(
                self.task_instances(dag_id, run.run_id).items()
            ):
                out.append(f"    {task_id}[{map_index}] {state} try={tries}")
            if not run.finished or run.state == "failed":
                for log_file in sorted(
                    (self.log_dir / f"dag_id={dag_id}" / f"run_id={run.run_id}").glob("**/*.log")
                ):
                    out.append(f"    --- {log_file.relative_to(self.log_dir)}\n{_tail(log_file, lines)}")
        errors = self.import_errors()
        if errors:
            out.append(f"import errors: {json.dumps(errors, indent=1)[:3000]}")
        out.append(self.log_tails(lines))
        return "\n".join(out)

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                return dict(json.load(resp))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def _healthy(self) -> bool:
        self.assert_running()
        health = self.health()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return bool(health) and all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def assert_running(self) -> None:
        dead = {c: p.returncode for c, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"Airflow components exited: {dead}\n{self.log_tails(60)}")

    def _wait(self, check: Any, *, timeout: float, interval: float = 0.5, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _wait_gone(procs: Sequence[Any], timeout: float, *, reap: Any) -> list[Any]:
    """Wait until none of ``procs`` is alive (zombies count as gone); return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        for child in reap:  # our own children: reap them so they do not linger as zombies
            child.poll()
        alive = [p for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _cmdline(proc: Any) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except Exception:
        return "?"


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _json(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def overlapping(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """Pairs of runs whose [start, end] intervals intersect."""
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a.start_date and a.end_date and b.start_date and b.end_date:
                if a.start_date < b.end_date and b.start_date < a.end_date:
                    pairs.append((a.run_id, b.run_id))
    return pairs


@pytest.fixture(scope="session")
def airflow_scheduler(
    devcluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowScheduler]:
    """A running Airflow deployment (api-server, scheduler, dag-processor, triggerer) on the repo's
    ``dags/`` with ``kubernetes_default`` pointing at the local cluster; stopped at session end."""
    deployment = AirflowScheduler(
        home=tmp_path_factory.mktemp("airflow_scheduler"),
        dags_folder=REPO / "dags",
        extra_env=devcluster.cluster.env(),
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
