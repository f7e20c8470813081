"""The wait is a watch that survives the API server going away: restart kube-apiserver while the
task waits (deferred in the trigger, or synchronously in the worker) and the task still ends with
the Job's real outcome -- no second Job, no lost result."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_until
from tests.e2e.dagstest import DagsTest

SELECTOR = "app.kubernetes.io/managed-by=airflow-provider-kbatch"


@pytest.mark.parametrize("mode", ["deferred", "sync"])
def test_wait_survives_an_api_server_restart(airflow_env, devcluster, namespace, mode):
    dag_id = f"kbatch_test_resilience_{mode}"
    run = DagsTest(airflow_env, dag_id, {"namespace": namespace, "sleep": 10})
    try:
        batch, core = devcluster.batch(), devcluster.core()
        wait_until(
            lambda: [p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"],
            timeout=120,
            what="pods of the slow job running",
        )
        started = time.monotonic()
        devcluster.cluster.restart_apiserver()
        restart_seconds = time.monotonic() - started
        code = run.finish(timeout=300)
    finally:
        run.kill()
    assert code == 0, run.output()[-6000:]
    assert restart_seconds > 0.5, "the API server did not really go away"
    jobs = batch.list_namespaced_job(namespace, label_selector=SELECTOR).items
    assert len(jobs) == 1, [j.metadata.name for j in jobs]
    xcom = airflow_env.xcom(dag_id, "slow")
    assert xcom["completed_indexes"] == "0-2"
    assert xcom["results"] == {str(i): {"index": i, "square": i * i} for i in range(3)}
