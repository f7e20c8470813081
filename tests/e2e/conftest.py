"""Real Airflow 3 against the local cluster.

* ``airflow_env``: an isolated AIRFLOW_HOME on SQLite with the repo's ``dags/`` folder, ``airflow
  dags test`` run as a subprocess, XComs and task states read back from the metadata database.
* ``airflow_deployment`` (alias ``airflow_scheduler``): one real deployment on PostgreSQL
  (api-server, scheduler, dag-processor, triggerer) for the whole session, shared by every
  module that asks for it; see ``tests/e2e/scheduler.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dagstest import DagsTest
from tests.e2e.forkserver import ForkServer, run_forked
from tests.e2e.scheduler import AirflowDeployment, e2e_dags_folder
from tests.otlp import OtlpReceiver, tracing_env

REPO = Path(__file__).resolve().parents[2]


@dataclass
class AirflowEnv:
    home: Path
    env: dict[str, str]
    #: Forks ``airflow`` commands from a warmed Airflow (tests/e2e/forkserver.py) for the runs
    #: whose environment is ``env``; ``None``: every command is a plain process.
    forkserver: ForkServer | None = None

    def command(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).parent / "airflow"), *args]

    def _forks(self) -> ForkServer | None:
        return self.forkserver if self.forkserver is not None and self.forkserver.serves(self.env) else None

    def spawn(self, *args: str, log: Path) -> Any:
        """``airflow <args>`` in the background, in its own session, stdout and stderr to ``log``
        (a ``subprocess.Popen`` or the fork server's equivalent: ``pid``, ``poll``, ``wait``)."""
        server = self._forks()
        if server is not None:
            return server.spawn(list(args), cwd=self.home, stdout=log)
        with log.open("w") as out:
            return subprocess.Popen(
                self.command(*args),
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        server = self._forks()
        if server is not None:
            proc = run_forked(server, list(args), cwd=self.home, timeout=timeout)
        else:
            proc = subprocess.run(
                self.command(*args),
                env=self.env,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                f"--- stderr\n{proc.stderr[-6000:]}"
            )
        return proc

    def dags_test(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any] | None = None,
        logical_date: str = "2026-01-01",
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        args = ["dags", "test", dag_id, logical_date]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        return self.run(*args, check=check)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "airflow.db")

    def task_states(self, dag_id: str, run_id: str | None = None) -> dict[tuple[str, int], tuple[str, int]]:
        """(task_id, map_index) -> (state, try_number) of the latest run (or ``run_id``)."""
        with self.db() as db:
            if run_id is None:
                row = db.execute(
                    "select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)
                ).fetchone()
                run_id = row[0]
            rows = db.execute(
                "select task_id, map_index, state, try_number from task_instance where dag_id=? and run_id=?",
                (dag_id, run_id),
            ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        with self.db() as db:
            row = db.execute(
                "select x.value from xcom x join dag_run r on r.id = x.dag_run_id "
                "where x.dag_id=? and x.task_id=? and x.key=? and x.map_index=? order by r.id desc limit 1",
                (dag_id, task_id, key, map_index),
            ).fetchone()
        if row is None:
            return None
        value = row[0]
        value = json.loads(value) if isinstance(value, str | bytes) else value
        return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="session")
def airflow_env(devcluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowEnv]:
    """An AIRFLOW_HOME on SQLite; ``airflow`` commands with its environment are forked from the
    session's fork server (tests/e2e/forkserver.py)."""
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"  # the examples plus the DAGs that exist only for tests
    dags.mkdir()
    (dags / "examples").symlink_to(REPO / "dags" / "examples")
    (dags / "e2e").symlink_to(REPO / "tests" / "e2e" / "dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(devcluster.cluster.env())
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            # `dags test` runs the trigger in line: no scheduler race to hold events against
            "AIRFLOW__KBATCH__TRIGGER_EVENT_HOLD_SECONDS": "0",
        }
    )
    airflow = AirflowEnv(home, env)
    airflow.run("db", "migrate", timeout=300)
    # after the migration: the server's Airflow reads a ready database. Each `airflow` command of
    # the session then starts in ~1.5 s instead of ~12-16 s (imports, the in-process API's routers)
    airflow.forkserver = ForkServer(env, home, home / "forkserver.log")
    try:
        yield airflow
    finally:
        airflow.forkserver.close()


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """The session's OTLP/HTTP trace receiver (tests/otlp.py); the deployment exports to it."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def airflow_deployment(
    devcluster: Any, tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver
) -> Iterator[AirflowDeployment]:
    """The session's Airflow deployment on PostgreSQL, started by the first test that asks for it
    (about a minute) and stopped at the end of the session; ``kubernetes_default`` is the local
    cluster, the DAGs those of ``dags/examples`` and ``tests/e2e/dags``. Use your own run ids and
    namespaces: other tests' runs share it. OpenTelemetry tracing is on, exported to the session's
    ``otlp_receiver`` (alive for as long as the deployment)."""
    root = tmp_path_factory.mktemp("airflow_deployment")
    deployment = AirflowDeployment(
        home=root / "home",
        dags_folder=e2e_dags_folder(root / "dags"),
        extra_env={**devcluster.cluster.env(), **tracing_env(otlp_receiver.endpoint)},
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def airflow_scheduler(airflow_deployment: AirflowDeployment) -> AirflowDeployment:
    """The former name of ``airflow_deployment``."""
    return airflow_deployment


@pytest.fixture
def background(airflow_env: Any) -> Iterator[Any]:
    started: list[DagsTest] = []

    def start(dag_id: str, **conf: Any) -> DagsTest:
        run = DagsTest(airflow_env, dag_id, conf)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()
