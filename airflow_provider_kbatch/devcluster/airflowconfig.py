"""The configuration of the Airflow deployment of :mod:`airflow_provider_kbatch.devcluster.airflowdeploy`
(pure: nothing is started): its constants, :class:`DeploymentConfig` (ports, secrets, paths, the
database URL), the ``AIRFLOW__*`` settings and environment every component gets, and the
verdict on the api-server's health report.

Deliberate choices in the settings:

* ``[scheduler] use_job_schedule = False``: the scheduler creates no runs from the timetable (nor
  from assets), so unpausing a ``@daily`` DAG does not add a run of its own; only the runs a user
  creates (backfill, ``dags trigger``) exist. ``use_job_schedule=True`` gives one that schedules.
* ``[core] parallelism = 4``: LocalExecutor worker processes are few on a 2-core machine; one
  parsing process.
* ``[workers] min_heartbeat_interval = 1``: see the comment where it is set (a deferral race).
* ``[dag_processor] min_file_process_interval = 600``: unchanged files are not re-parsed every
  30 s (new and changed ones still are, within the 5 s ``refresh_interval``).
* ``$AIRFLOW_HOME/config/airflow_local_settings.py`` imports
  :mod:`airflow_provider_kbatch.hooks.preload` (``preload=True``, the default): the scheduler
  loads the Kubernetes clients once, and the task processes its LocalExecutor forks inherit them
  instead of importing them (about 1.1 CPU-seconds each). ``preload=False`` leaves it out.
* The simple auth manager with every user an admin: the UI asks for no login, and ``/auth/token``
  hands anyone a token for the REST API. The api-server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.ports import free_port
from airflow_provider_kbatch.devcluster.postgres import sqlalchemy_url

REPO = Path(__file__).resolve().parents[2]  # the checkout, with an editable install
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
MARKER_ENV = "KBATCH_AIRFLOW_DEPLOYMENT"
STATE_FILE = "deployment.json"
LOCAL_SETTINGS = '''"""Written by kbatch's devcluster: load the Kubernetes clients once per long-lived Airflow
process (see airflow_provider_kbatch.hooks.preload)."""
import airflow_provider_kbatch.hooks.preload  # noqa: F401

__all__: list[str] = []  # no name of this file goes into Airflow's settings
'''


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
    preload: bool = True
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
            # New and changed files are parsed within the 5 s refresh anyway (the default
            # file_parsing_sort_mode, modified_time, queues a file whose mtime is newer than its
            # last parse); re-parsing unchanged files every 30 s only burned CPU: 38 CPU-s every
            # 2 minutes with the e2e DAG folder, a sixth of this 2-core machine.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
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
