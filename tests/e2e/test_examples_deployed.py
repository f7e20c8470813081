"""Every example DAG of ``dags/examples`` under the real deployment (api-server, scheduler,
dag-processor, triggerer on PostgreSQL), the way users run them: triggered, deferred to the
triggerer, ended by the scheduler -- not ``airflow dags test``, which runs the trigger in line.

The runs start together (each in a namespace of its own) and are judged when all have ended, so
the module costs about as long as its slowest example. ``kbatch_example_daily`` (which needs an
existing claim) runs under the same deployment in ``test_backfill.py``, over five dates.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.examples.orders import expected_report
from tests.conftest import ClusterHandle, wait_until
from tests.e2e.scheduler import AirflowDeployment

log = logging.getLogger(__name__)

# dag id -> the state the run must end in, and the state of every task
EXAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    "kbatch_example_indexed": ("success", {"squares": "success"}),
    "kbatch_example_pipeline": (
        "success",
        dict.fromkeys(("ingest", "transform", "publish", "cleanup"), "success"),
    ),
    "kbatch_example_checkpoint": ("success", {"crunch": "success"}),
    "kbatch_example_contract_violation": (
        "failed",
        {"produce_orders": "success", "consume_orders": "failed"},
    ),
}


# the checkpoint example's items take 0.5 s each by default (20 per index): a tenth here
EXAMPLE_CONF: dict[str, dict[str, Any]] = {"kbatch_example_checkpoint": {"item_seconds": 0.05}}


@pytest.fixture(scope="module")
def example_runs(airflow_deployment: AirflowDeployment, devcluster: ClusterHandle) -> dict[str, Any]:
    deployment = airflow_deployment
    suffix = secrets.token_hex(3)
    started = time.monotonic()
    runs: dict[str, dict[str, Any]] = {}
    for dag_id in EXAMPLES:
        deployment.wait_dag(dag_id, timeout=180)
        namespace = devcluster.namespace("ex")
        run_id = f"manual__examples_{suffix}_{dag_id}"
        deployment.unpause(dag_id)
        conf: dict[str, Any] = {"namespace": namespace, **EXAMPLE_CONF.get(dag_id, {})}
        deployment.trigger(dag_id, run_id, conf=conf)
        runs[dag_id] = {"run_id": run_id, "namespace": namespace}

    def ended() -> bool:
        deployment.assert_running()
        done = 0
        for dag_id, run in runs.items():
            found = [r for r in deployment.runs(dag_id) if r.run_id == run["run_id"]]
            if found and found[0].finished:
                run["state"] = found[0].state
                done += 1
        return done == len(runs)

    try:
        wait_until(ended, timeout=600, interval=2, what="every example run ended")
    except AssertionError as err:
        raise AssertionError(f"{err}\n" + "\n".join(deployment.report(d) for d in runs)) from None
    for dag_id in runs:
        deployment.pause(dag_id)
    runs["_wall_seconds"] = {"value": time.monotonic() - started}
    return runs


@pytest.mark.timeout(900)
@pytest.mark.parametrize("dag_id", sorted(EXAMPLES))
def test_example_ends_as_documented(
    dag_id: str, example_runs: dict[str, Any], airflow_deployment: AirflowDeployment, record_property: Any
) -> None:
    run = example_runs[dag_id]
    want_state, want_tasks = EXAMPLES[dag_id]
    report = airflow_deployment.report(dag_id)
    assert run["state"] == want_state, report
    states = {
        task: s for (task, _), (s, _) in airflow_deployment.task_instances(dag_id, run["run_id"]).items()
    }
    assert states == want_tasks, report
    record_property("examples_wall_seconds", round(example_runs["_wall_seconds"]["value"], 1))


def test_indexed_example_returns_every_result_and_logs_every_index(
    example_runs: dict[str, Any], airflow_deployment: AirflowDeployment
) -> None:
    dag_id = "kbatch_example_indexed"
    run_id = example_runs[dag_id]["run_id"]
    xcom = airflow_deployment.xcom(dag_id, run_id, "squares")
    assert xcom["completed_indexes"] == "0-7" and xcom["failed_indexes"] == ""
    assert xcom["results"] == {str(i): {"index": i, "square": i * i} for i in range(8)}
    logs = airflow_deployment.task_logs(dag_id, run_id, "squares")
    missing = [i for i in range(8) if f"[index {i}] " not in logs]
    assert not missing, f"no log line of indexes {missing} in the task log:\n{logs[-6000:]}"


def test_pipeline_example_hands_the_data_through(
    example_runs: dict[str, Any], airflow_deployment: AirflowDeployment
) -> None:
    dag_id = "kbatch_example_pipeline"
    run_id = example_runs[dag_id]["run_id"]
    publish = airflow_deployment.xcom(dag_id, run_id, "publish")
    assert publish["results"]["0"]["by_category"] == expected_report(8)


def test_contract_violation_submits_nothing_for_the_consumer(
    example_runs: dict[str, Any], airflow_deployment: AirflowDeployment, devcluster: ClusterHandle
) -> None:
    dag_id = "kbatch_example_contract_violation"
    run = example_runs[dag_id]
    assert airflow_deployment.task_instances(dag_id, run["run_id"])[("consume_orders", -1)] == ("failed", 1)
    logs = airflow_deployment.task_logs(dag_id, run["run_id"], "consume_orders")
    assert "stage 'consume_orders': 1 input problem(s), nothing was submitted" in logs
    jobs = devcluster.batch().list_namespaced_job(run["namespace"]).items
    assert [j.metadata.labels["kbatch.io/task-id"] for j in jobs] == ["produce_orders"]


def test_every_example_dag_runs_under_the_deployment() -> None:
    """A new example must be added here (or to test_backfill.py, which runs the daily one)."""
    examples = Path(__file__).resolve().parents[2] / "dags" / "examples"
    dag_ids = {
        line.split('"')[1]
        for path in examples.glob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith("dag_id=")
    }
    assert dag_ids == set(EXAMPLES) | {"kbatch_example_daily"}
