"""A real Airflow 3 deployment on PostgreSQL against the development cluster: api-server,
scheduler (LocalExecutor), dag-processor and triggerer as separate processes sharing one
``AIRFLOW_HOME``, with the cluster's ``kubernetes_default`` connection in their environment.

The end-to-end tests share one per session (the ``airflow_deployment`` fixture of
``tests/e2e/conftest.py``); a person starts one with ``make airflow-up``, that is
``python -m airflow_provider_kbatch.devcluster [--state-dir CLUSTER] airflow up [--state-dir DIR]``.
It runs ``airflow`` as subprocesses (the ``bin/airflow`` next to this interpreter) and imports
neither Airflow nor pytest::

    deployment = AirflowDeployment(home=..., dags_folder=..., extra_env=cluster.env())
    deployment.start()
    deployment.wait_dag("my_dag")
    backfill_id = deployment.backfill("my_dag", "2026-01-01", "2026-01-05", conf={...})
    deployment.unpause("my_dag")
    runs = deployment.wait_runs("my_dag", 5, backfill_id=backfill_id, timeout=300)
    deployment.stop()

Deliberate choices:

* PostgreSQL, as production uses (:mod:`airflow_provider_kbatch.devcluster.postgres`: its own
  throwaway server on a loopback port, started before ``airflow db migrate`` and stopped after
  the last Airflow process).
* ``[scheduler] use_job_schedule = False``: the scheduler creates no runs from the timetable (nor
  from assets), so unpausing a ``@daily`` DAG does not add a run of its own; only the runs a user
  creates (backfill, ``dags trigger``) exist. ``use_job_schedule=True`` gives one that schedules.
* ``[core] parallelism = 4``: LocalExecutor worker processes are few on a 2-core machine; one
  parsing process, each file re-parsed every 30 s at most.
* ``[workers] min_heartbeat_interval = 1``: see the comment where it is set (a deferral race).
* The simple auth manager with every user an admin: the UI asks for no login, and ``/auth/token``
  hands anyone a token for the REST API. The api-server listens on 127.0.0.1 only.
* Every process the deployment starts carries a marker in its environment. Task processes run
  in process groups of their own (the task supervisor calls ``setpgid``) and may be re-parented
  when their parent dies, so :meth:`AirflowDeployment.stop` finds them by that marker as well as
  by parentage from the components (known by pid and start time) and signals the components'
  process groups: SIGTERM, a grace period, SIGKILL, and an error if anything is still alive. It works from another process too (``airflow down`` reads ``deployment.json``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_kbatch.devcluster.build import cache_root
from airflow_provider_kbatch.devcluster.ports import free_port
from airflow_provider_kbatch.devcluster.postgres import DATABASE, USER, PostgresServer, sqlalchemy_url

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]  # the checkout, with an editable install
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
MARKER_ENV = "KBATCH_AIRFLOW_DEPLOYMENT"
STATE_FILE = "deployment.json"


# ---------------------------------------------------------------- configuration (pure)
@dataclass(frozen=True)
class DeploymentConfig:
    """What makes a deployment's environment: ports, secrets, paths, the database URL.

    :meth:`new` chooses the ports and secrets; :meth:`env` is a pure function of the fields.
    """

    home: Path
    dags_folder: Path
    sql_alchemy_conn: str
    api_port: int
    worker_log_port: int
    trigger_log_port: int
    marker: str
    api_secret_key: str
    jwt_secret: str
    parallelism: int = 4
    use_job_schedule: bool = False
    bin_dir: Path = Path(sys.executable).parent
    pythonpath: tuple[str, ...] = ()

    @classmethod
    def new(cls, home: Path, dags_folder: Path, *, database_port: int, **options: Any) -> DeploymentConfig:
        chosen = [database_port]  # not bound yet: keep the others off it
        for _ in range(3):
            chosen.append(free_port(avoid=set(chosen)))
        options.setdefault("pythonpath", (str(REPO),) if (REPO / "pyproject.toml").exists() else ())
        return cls(
            home=Path(home),
            dags_folder=Path(dags_folder),
            sql_alchemy_conn=sqlalchemy_url(database_port),
            api_port=chosen[1],
            worker_log_port=chosen[2],
            trigger_log_port=chosen[3],
            marker=secrets.token_hex(8),
            api_secret_key=secrets.token_hex(16),
            jwt_secret=secrets.token_hex(32),
            **options,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def airflow(self) -> str:
        return str(self.bin_dir / "airflow")

    def airflow_settings(self) -> dict[str, str]:
        """The ``AIRFLOW__*`` variables every component and CLI command gets."""
        return {
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": self.api_secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.use_job_schedule),
            # The task supervisor notices its task process exited on its next wake-up, which
            # can be min_heartbeat_interval (5 s) late; the scheduler then sees a deferring
            # task's "success" only after the trigger already resumed it, and fails it as
            # "state changed externally" (apache/airflow#72716, open in 3.3). 1 s makes that
            # window small; the bug itself is Airflow's.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
        }

    def env(self, base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (the caller's environment) without its ``AIRFLOW__*`` settings, then ``extra``
        (the cluster's: kubeconfig, ``PATH`` with kubectl, the connection), then the deployment's."""
        env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW__")}
        env.update(extra or {})
        env.update(self.airflow_settings())
        env[MARKER_ENV] = self.marker
        env["AIRFLOW_HOME"] = str(self.home)
        env["PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("PATH", "")) if p)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*self.pythonpath, env.get("PYTHONPATH", "")) if p)
        return env

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(home=str(self.home), dags_folder=str(self.dags_folder), bin_dir=str(self.bin_dir))
        data["pythonpath"] = list(self.pythonpath)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploymentConfig:
        values = dict(data)
        for key in ("home", "dags_folder", "bin_dir"):
            values[key] = Path(values[key])
        values["pythonpath"] = tuple(values.get("pythonpath", ()))
        return cls(**values)


def healthy(health: Mapping[str, Any]) -> bool:
    """The api-server's ``/api/v2/monitor/health`` says every component is healthy."""
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return bool(health) and all((health.get(p) or {}).get("status") == "healthy" for p in parts)


# ---------------------------------------------------------------- what the database says
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


def overlapping(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """Pairs of runs whose [start, end] intervals intersect."""
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a.start_date and a.end_date and b.start_date and b.end_date:
                if a.start_date < b.end_date and b.start_date < a.end_date:
                    pairs.append((a.run_id, b.run_id))
    return pairs


# ---------------------------------------------------------------- the deployment
@dataclass
class AirflowDeployment:
    """An Airflow deployment of separate processes sharing one ``AIRFLOW_HOME``, on its own
    PostgreSQL server.

    ``start()`` starts PostgreSQL, migrates the database, starts the four components and waits
    until the api-server reports all of them healthy; ``stop()`` leaves no process behind.
    """

    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 4
    use_job_schedule: bool = False
    config: DeploymentConfig | None = None  # given when attaching to a running deployment
    postgres: PostgresServer = field(default_factory=PostgresServer)
    pids: dict[str, int] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)  # pid's start time: no pid reuse
    procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    startup_seconds: float | None = field(init=False, default=None)
    stop_seconds: float | None = field(init=False, default=None)
    killed: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        if self.config is None:
            self.config = DeploymentConfig.new(
                self.home,
                Path(self.dags_folder),
                database_port=self.postgres.port,
                parallelism=self.parallelism,
                use_job_schedule=self.use_job_schedule,
            )
        self.cfg: DeploymentConfig = self.config
        self.env = self.cfg.env(os.environ, self.extra_env)

    # ---------------------------------------------------------------- paths
    @property
    def marker(self) -> str:
        return self.cfg.marker

    @property
    def port(self) -> int:
        return self.cfg.api_port

    @property
    def url(self) -> str:
        return self.cfg.url

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def component_log(self, component: str) -> Path:
        return self.home / f"{component}.out"

    @property
    def state_file(self) -> Path:
        return self.home / STATE_FILE

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 300) -> None:
        """PostgreSQL, ``airflow db migrate``, the components; wait until all are healthy.

        ``timings`` gets the seconds of each step (``postgres``, ``migrate``, ``components``).
        A failed start stops what it started."""
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.postgres.start(timeout=min(timeout, 90))
            self.timings["postgres"] = time.monotonic() - started
            self.save_state()
            self.run("db", "migrate", timeout=timeout)
            self.timings["migrate"] = time.monotonic() - started - self.timings["postgres"]
            for component in COMPONENTS:
                self._start_component(component)
            self.save_state()
            remaining = timeout - (time.monotonic() - started)
            self._wait(self._healthy, timeout=max(remaining, 10), what="all components healthy")
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self.timings["components"] = self.startup_seconds - self.timings["postgres"] - self.timings["migrate"]
        log.info(
            "Airflow deployment ready at %s in %.1fs (PostgreSQL %.1fs, db migrate %.1fs, components %.1fs)",
            self.url,
            self.startup_seconds,
            self.timings["postgres"],
            self.timings["migrate"],
            self.timings["components"],
        )

    def _start_component(self, component: str) -> None:
        args = [component]
        if component in ("scheduler", "triggerer"):
            args.append("--skip-serve-logs")
        with self.component_log(component).open("ab") as out:
            proc = subprocess.Popen(
                [self.cfg.airflow, *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[component] = proc
        self.pids[component] = proc.pid
        with contextlib.suppress(psutil.Error):
            self.created[component] = psutil.Process(proc.pid).create_time()
        log.info("started airflow %s (pid %s, log %s)", component, proc.pid, self.component_log(component))

    def stop(self, *, grace: float = 20) -> None:
        """Stop everything: SIGTERM the components (they stop their own workers), then SIGTERM
        their process groups and every process left, and SIGKILL what is still alive after
        ``grace`` seconds in all; then PostgreSQL. Raises if an Airflow process survives that."""
        stopping = time.monotonic()
        victims = self._processes()
        roots = self._roots()
        for proc in roots:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        alive = _wait_gone(victims, grace / 2, reap=self.procs.values())
        alive = _unique([*alive, *self._processes()])
        if alive:
            for proc in roots:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for victim in alive:
                with contextlib.suppress(psutil.Error):
                    victim.send_signal(signal.SIGTERM)
            alive = _wait_gone(alive, grace / 2, reap=self.procs.values())
        # late children and orphans re-parented while we waited
        alive = _unique([*alive, *self._processes()])
        self.killed = [f"{p.pid} {_cmdline(p)}" for p in alive]
        for victim in alive:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        _wait_gone(alive, 10, reap=self.procs.values())
        left = [f"{p.pid} {_cmdline(p)}" for p in self._processes()]
        self.postgres.stop()
        self.pids.clear()
        self.created.clear()
        self.state_file.unlink(missing_ok=True)
        self.stop_seconds = time.monotonic() - stopping
        if left:
            raise RuntimeError("Airflow processes survived SIGKILL:\n" + "\n".join(left))
        if self.killed:
            warnings.warn(
                f"Airflow processes ignored SIGTERM for {grace}s and were killed: {self.killed}", stacklevel=2
            )

    def _roots(self) -> list[psutil.Process]:
        """The live component processes: a recorded pid counts only while it is the process
        started then (same start time). Not by marker: Airflow's ``setproctitle`` overwrites
        the environment the kernel shows for some of them."""
        roots = []
        for component, pid in self.pids.items():
            child = self.procs.get(component)
            if child is not None and child.poll() is not None:
                continue  # our own child, exited and reaped: its pid may be someone else's now
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if child is not None or abs(proc.create_time() - self.created.get(component, -1.0)) < 0.05:
                    roots.append(proc)
        return [p for p in roots if _alive(p)]

    def _processes(self) -> list[psutil.Process]:
        """Every live process started by this deployment: by marker, process group and parentage."""
        found: dict[int, psutil.Process] = {}
        for root in self._roots():
            found[root.pid] = root
            with contextlib.suppress(psutil.Error):
                found.update({c.pid: c for c in root.children(recursive=True)})
        for proc in psutil.process_iter():
            if proc.pid != os.getpid() and self._marked(proc):
                found[proc.pid] = proc
        return [p for p in found.values() if _alive(p)]

    def _marked(self, proc: psutil.Process) -> bool:
        try:
            return bool(proc.environ().get(MARKER_ENV) == self.marker)
        except psutil.Error:
            return False

    # ---------------------------------------------------------------- state (for another process)
    def save_state(self) -> None:
        """``deployment.json`` in the home: what :meth:`attach` needs to report on and stop it."""
        state = {
            "config": self.cfg.to_json(),
            "extra_env": self.extra_env,
            "pids": self.pids,
            "created": self.created,
            "postgres": self.postgres.state(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.chmod(0o600)  # it holds the api-server's secrets
        tmp.replace(self.state_file)

    @classmethod
    def attach(cls, home: Path) -> AirflowDeployment | None:
        """The deployment whose state is in ``home``, started by another process; None if none."""
        try:
            state = json.loads((Path(home) / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        config = DeploymentConfig.from_json(state["config"])
        return cls(
            home=config.home,
            dags_folder=config.dags_folder,
            extra_env=dict(state.get("extra_env", {})),
            parallelism=config.parallelism,
            use_job_schedule=config.use_job_schedule,
            config=config,
            postgres=PostgresServer.from_state(state["postgres"]),
            pids={k: int(v) for k, v in state.get("pids", {}).items()},
            created={k: float(v) for k, v in state.get("created", {}).items()},
        )

    def status(self) -> dict[str, Any]:
        alive = {p.pid for p in self._roots()}
        return {
            "running": bool(alive),
            "home": str(self.home),
            "url": self.url,
            "dags_folder": str(self.cfg.dags_folder),
            "database": self.cfg.sql_alchemy_conn,
            "postgres": self.postgres.running(),
            "components": {c: self.pids.get(c) in alive for c in COMPONENTS},
            "health": self.health(),
        }

    # ---------------------------------------------------------------- CLI
    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``airflow <args>`` against this deployment's home and database."""
        proc = subprocess.run(
            [self.cfg.airflow, *args],
            env=self.env,
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

    def trigger(self, dag_id: str, run_id: str, *, conf: Mapping[str, Any] | None = None) -> None:
        """``airflow dags trigger`` with a run id of the caller's (unique per test, please)."""
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        self.run(*args)

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

    # ---------------------------------------------------------------- REST API
    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A call of the REST API (``/api/v2/...``) with a token of the (all-admin) auth manager."""
        with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as response:
            token = json.loads(response.read())["access_token"]
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                return dict(json.load(resp))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    # ---------------------------------------------------------------- metadata database
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (``%s`` placeholders), timestamps in UTC."""
        import psycopg2  # the postgres extra of apache-airflow brings it

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres.port,
            user=USER,
            dbname=DATABASE,
            connect_timeout=10,
            options="-c timezone=UTC -c default_transaction_read_only=on",
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def _last_backfill_id(self, dag_id: str) -> int | None:
        rows = self.query("select max(id) from backfill where dag_id=%s", dag_id)
        return rows[0][0] if rows else None

    def backfill_completed(self, backfill_id: int) -> bool:
        """The scheduler marks a backfill completed once all its runs finished (a DAG allows one
        backfill at a time: create the next only after this)."""
        rows = self.query("select completed_at from backfill where id=%s", backfill_id)
        return bool(rows) and rows[0][0] is not None

    def dag_parsed(self, dag_id: str) -> bool:
        rows = self.query("select is_stale from dag where dag_id=%s and bundle_name is not null", dag_id)
        return bool(rows) and not rows[0][0]

    def import_errors(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.query("select filename, stacktrace from import_error")}

    def wait_dag(self, dag_id: str, *, timeout: float = 120) -> None:
        """Wait until the dag-processor has put ``dag_id`` in the database."""
        self._wait(lambda: self.dag_parsed(dag_id), timeout=timeout, what=f"DAG {dag_id} parsed")

    def runs(self, dag_id: str, *, run_type: str | None = None, backfill_id: int | None = None) -> list[Run]:
        sql = (
            "select dag_id, run_id, state, run_type, logical_date, start_date, end_date, backfill_id, conf "
            "from dag_run where dag_id=%s"
        )
        params: list[Any] = [dag_id]
        if run_type is not None:
            sql += " and run_type=%s"
            params.append(run_type)
        if backfill_id is not None:
            sql += " and backfill_id=%s"
            params.append(backfill_id)
        rows = self.query(sql + " order by logical_date, id", *params)
        return [
            Run(
                dag_id=r[0],
                run_id=r[1],
                state=r[2],
                run_type=r[3],
                logical_date=_utc(r[4]),
                start_date=_utc(r[5]),
                end_date=_utc(r[6]),
                backfill_id=r[7],
                conf=_json(r[8]),
            )
            for r in rows
        ]

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str | None, int]]:
        """(task_id, map_index) -> (state, try_number)."""
        rows = self.query(
            "select task_id, map_index, state, try_number from task_instance where dag_id=%s and run_id=%s",
            dag_id,
            run_id,
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        rows = self.query(
            "select value from xcom where dag_id=%s and run_id=%s and task_id=%s and key=%s and map_index=%s",
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
            return list(
                self._wait(check, timeout=timeout, interval=1.0, what=f"{count} finished runs of {dag_id}")
            )
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
        parts = [
            f"--- {c} ({self.component_log(c)})\n{_tail(self.component_log(c), lines)}" for c in COMPONENTS
        ]
        if self.postgres.root is not None:
            parts.append(f"--- postgres ({self.postgres.log_file})\n{self.postgres.log_tail(lines)}")
        return "\n".join(parts)

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

    def _healthy(self) -> bool:
        self.assert_running()
        return healthy(self.health())

    def assert_running(self) -> None:
        dead = {c: p.returncode for c, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"Airflow components exited: {dead}\n{self.log_tails(60)}")

    def _wait(self, check: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _wait_gone(
    procs: Sequence[psutil.Process], timeout: float, *, reap: Iterable[subprocess.Popen[bytes]]
) -> list[psutil.Process]:
    """Wait until none of ``procs`` is alive (zombies count as gone); return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        for child in reap:  # our own children: reap them so they do not linger as zombies
            child.poll()
        alive = [p for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _unique(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    return list({p.pid: p for p in procs}.values())


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return "?"


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _utc(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return (
        parsed.astimezone(datetime.timezone.utc)
        if parsed.tzinfo
        else parsed.replace(tzinfo=datetime.timezone.utc)
    )


def _json(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- for people: the CLI's steps
def default_home(name: str = "default") -> Path:
    """Where ``airflow up`` keeps a deployment when no ``--state-dir`` is given."""
    return cache_root() / "airflow" / name


def up(
    home: Path,
    *,
    dags_folder: Path,
    cluster_env: Mapping[str, str],
    timeout: float = 300,
    parallelism: int = 4,
) -> tuple[AirflowDeployment, bool]:
    """Start a deployment in ``home`` unless one is running there already (healthy); returns it
    and whether it was started now. A deployment found there half-running is stopped first."""
    existing = AirflowDeployment.attach(home)
    if existing is not None:
        if healthy(existing.health()):
            return existing, False
        log.info("the Airflow deployment in %s is not healthy: stopping what is left of it", home)
        existing.stop()
    deployment = AirflowDeployment(
        home=home, dags_folder=dags_folder, extra_env=dict(cluster_env), parallelism=parallelism
    )
    deployment.start(timeout=timeout)
    return deployment, True


def down(home: Path) -> bool:
    """Stop the deployment in ``home`` (its processes and PostgreSQL); False if none was there.
    The home (logs, ``airflow.cfg``) stays."""
    deployment = AirflowDeployment.attach(home)
    if deployment is None:
        return False
    deployment.stop()
    return True


def shell_env(deployment: AirflowDeployment) -> dict[str, str]:
    """What a shell needs to run the ``airflow`` CLI against the deployment."""
    env = {"AIRFLOW_HOME": str(deployment.home), **deployment.extra_env, **deployment.cfg.airflow_settings()}
    env["PATH"] = deployment.env["PATH"]
    return env


def describe(deployment: AirflowDeployment) -> str:
    """Where to find it and how to log in, for the person who ran ``airflow up``."""
    pg = deployment.postgres
    timings = deployment.timings
    lines = []
    if deployment.startup_seconds is not None:
        lines.append(
            f"Airflow deployment ready in {deployment.startup_seconds:.1f}s (PostgreSQL "
            f"{timings['postgres']:.1f}s, db migrate {timings['migrate']:.1f}s, components {timings['components']:.1f}s)."
        )
    else:
        lines.append("Airflow deployment already running.")
    lines += [
        f"  UI and REST API: {deployment.url}",
        "  login: none -- the simple auth manager makes every user an admin (loopback only);",
        f"         REST API tokens from {deployment.url}/auth/token",
        f"  metadata database: {deployment.cfg.sql_alchemy_conn}  (psql -h 127.0.0.1 -p {pg.port} -U {USER})",
        f"  DAGs folder: {deployment.cfg.dags_folder}",
        f"  home and logs: {deployment.home}",
    ]
    return "\n".join(lines) + "\n"
