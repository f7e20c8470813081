"""The shared deployment runs on PostgreSQL, as production does: Airflow's configuration names
the PostgreSQL database, every component holds connections that the server lists in
``pg_stat_activity``, and a DAG run the deployment executed is a row of that server's
``dag_run`` table, read with ``psql``.

(The components' ``/proc/<pid>/environ`` cannot tell: Airflow's ``setproctitle`` writes the
process title over it.)"""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any

import psutil
import pytest

from tests.conftest import ClusterHandle, wait_until
from tests.e2e.scheduler import COMPONENTS, AirflowDeployment

DAG_ID = "kbatch_example_indexed"


@pytest.mark.timeout(900)
def test_the_deployment_runs_on_postgresql(
    airflow_deployment: AirflowDeployment, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    deployment = airflow_deployment
    url = deployment.postgres.url
    assert url.startswith("postgresql+psycopg2://"), url
    configured = deployment.run("config", "get-value", "database", "sql_alchemy_conn").stdout.strip()
    assert configured == url
    assert deployment.health()["metadatabase"]["status"] == "healthy"
    for component in COMPONENTS:
        wait_until(
            lambda component=component: connected(deployment, component),
            timeout=60,
            what=f"a connection of the {component} listed by PostgreSQL",
        )

    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    run_id = f"manual__postgres_{secrets.token_hex(4)}"
    deployment.trigger(DAG_ID, run_id, conf={"namespace": namespace})
    finished = wait_until(
        lambda: [r for r in deployment.runs(DAG_ID) if r.run_id == run_id and r.finished],
        timeout=300,
        interval=1,
        what=f"run {run_id} finished",
    )
    assert finished[0].state == "success", deployment.report(DAG_ID)

    # the same row, straight from the PostgreSQL server with its own client
    row = deployment.postgres.psql(
        f"select state, run_type from dag_run where dag_id = '{DAG_ID}' and run_id = '{run_id}'"
    )
    assert row == "success|manual", row
    states = deployment.postgres.psql(
        f"select task_id, state from task_instance where dag_id = '{DAG_ID}' and run_id = '{run_id}'"
    )
    assert states == "squares|success", states
    version = deployment.postgres.psql("show server_version")
    assert version.split(".")[0].isdigit(), version
    xcom = deployment.xcom(DAG_ID, run_id, "squares")
    assert xcom["completed_indexes"] == "0-7", xcom
    record_property("postgres_server_version", version)
    record_property("deployment_startup_s", round(deployment.startup_seconds or 0, 1))
    for step, seconds in deployment.timings.items():
        record_property(f"deployment_{step}_s", round(seconds, 1))


def connected(deployment: AirflowDeployment, component: str) -> set[int]:
    """Local ports of the component's (or its children's) TCP connections to the deployment's
    PostgreSQL server that the server itself lists as client backends of the ``airflow`` database."""
    root = psutil.Process(deployment.pids[component])
    ours = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ours |= {c.laddr.port for c in connections if c.raddr and c.raddr.port == deployment.postgres.port}
    listed = deployment.postgres.psql(
        "select client_port from pg_stat_activity where datname = 'airflow' and client_port is not null"
    )
    return ours & {int(port) for port in listed.split()}


def test_every_airflow_process_of_the_deployment_loads_the_kubernetes_clients_once(
    airflow_deployment: AirflowDeployment,
) -> None:
    """``$AIRFLOW_HOME/config/airflow_local_settings.py`` imports ``hooks.preload`` when Airflow
    itself is imported: the scheduler has the clients before its LocalExecutor forks a task."""
    wanted = ["airflow_local_settings", "kubernetes.client", "kubernetes_asyncio.client"]
    probe = f"import sys, airflow; print(sorted(m for m in sys.modules if m in {wanted!r}))"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        env=airflow_deployment.env,
        cwd=airflow_deployment.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert found.stdout.strip().splitlines()[-1] == str(wanted), found.stdout + found.stderr
