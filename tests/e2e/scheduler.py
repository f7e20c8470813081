"""The real Airflow deployment of the end-to-end tests: api-server, scheduler (LocalExecutor),
dag-processor and triggerer as separate processes on PostgreSQL. The harness itself is
:mod:`airflow_provider_kbatch.devcluster.airflowdeploy` (people start it with ``make
airflow-up``); this module keeps the names the tests import.

One deployment serves the whole session: the ``airflow_deployment`` fixture (also named
``airflow_scheduler``) of ``tests/e2e/conftest.py``, started by the first test that asks for it,
with the DAGs of ``dags/examples`` and ``tests/e2e/dags``::

    @pytest.mark.timeout(900)  # the first test using it pays for the start-up
    def test_something(airflow_deployment, devcluster):
        airflow_deployment.wait_dag("my_dag")
        airflow_deployment.trigger("my_dag", f"manual__{secrets.token_hex(4)}", conf={...})

Tests that share it use DAG ids or run ids of their own and namespaces of their own. A test that
needs a deployment of its own (another DAG folder, ``use_job_schedule=True``) builds
``AirflowScheduler(home=..., dags_folder=..., extra_env=devcluster.cluster.env())``, starts it
and stops it.
"""

from __future__ import annotations

from pathlib import Path

from airflow_provider_kbatch.devcluster.airflowdeploy import (
    COMPONENTS,
    MARKER_ENV,
    AirflowDeployment,
    Run,
    overlapping,
)

REPO = Path(__file__).resolve().parents[2]
AirflowScheduler = AirflowDeployment  # the name the tests have used

__all__ = [
    "COMPONENTS",
    "MARKER_ENV",
    "REPO",
    "AirflowDeployment",
    "AirflowScheduler",
    "Run",
    "e2e_dags_folder",
    "overlapping",
]


def e2e_dags_folder(path: Path) -> Path:
    """A DAG folder at ``path`` with the examples and the DAGs that exist only for tests."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "examples").symlink_to(REPO / "dags" / "examples")
    (path / "e2e").symlink_to(REPO / "tests" / "e2e" / "dags")
    return path
