"""A deferred task marked failed in a real deployment (api-server, scheduler, dag-processor,
triggerer): the triggerer cancels the trigger and runs its ``on_kill``, which deletes the Job --
no Job, pod or container process survives. The official provider leaves the Job running (#36090).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import ClusterHandle, wait_until
from tests.e2e.scheduler import AirflowScheduler
from tests.integration.test_operator_on_kill import processes_with

DAG_ID, TASK_ID = "kbatch_test_kill_deferred", "sleepy"
log = logging.getLogger(__name__)


def api(sched: AirflowScheduler, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with urllib.request.urlopen(f"{sched.url}/auth/token", timeout=30) as response:  # all admins
        token = json.loads(response.read())["access_token"]
    request = urllib.request.Request(
        f"{sched.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


@pytest.mark.timeout(900)
def test_marking_a_deferred_task_failed_deletes_its_job(
    airflow_deployment: AirflowScheduler, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    sched = airflow_deployment
    sched.wait_dag(DAG_ID, timeout=180)
    sched.unpause(DAG_ID)
    marker = f"kbatch-kill-deferred-{secrets.token_hex(6)}"
    run_id = f"manual__kill_{marker}"
    sched.run(
        "dags",
        "trigger",
        DAG_ID,
        "--run-id",
        run_id,
        "-c",
        json.dumps({"namespace": namespace, "marker": marker}),
    )

    def deferred() -> bool:
        return sched.task_instances(DAG_ID, run_id).get((TASK_ID, -1), (None, 0))[0] == "deferred"

    try:
        wait_until(deferred, timeout=300, interval=1, what=f"the task deferred\n{sched.report(DAG_ID)}")
        seen_deferred = time.monotonic()
        wait_until(
            lambda: len(processes_with(marker)) == 2, timeout=120, what="both pods running as processes"
        )
        # on_kill is the running trigger's: wait until the triggerer runs it (its progress lines
        # reach the task's trigger log). A task marked failed before that has no trigger to kill.
        wait_until(
            lambda: "indexes 0/2 done" in sched.task_logs(DAG_ID, run_id, TASK_ID),
            timeout=240,
            interval=1,
            what="the trigger running in the triggerer",
        )
        pickup = time.monotonic() - seen_deferred
    except AssertionError:
        raise AssertionError(sched.report(DAG_ID)) from None
    (job,) = devcluster.batch().list_namespaced_job(namespace).items
    assert job.metadata.labels["kbatch.io/task-id"] == TASK_ID

    marked = time.monotonic()
    ti = api(
        sched,
        "PATCH",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}",
        {"new_state": "failed"},
    )
    assert [t["state"] for t in ti.get("task_instances", [ti])] == ["failed"], ti
    wait_until(
        lambda: processes_with(marker) == [],
        timeout=120,
        what=f"the pods' processes gone after the task was marked failed\n{sched.report(DAG_ID)}",
    )
    gone = time.monotonic() - marked
    wait_until(
        lambda: devcluster.batch().list_namespaced_job(namespace).items == [],
        timeout=60,
        what="the Job deleted",
    )
    assert devcluster.core().list_namespaced_pod(namespace).items == []
    record_property("mark_failed_to_no_process_s", round(gone, 3))
    record_property("deferred_to_trigger_running_s", round(pickup, 1))
    log.info("measured mark failed -> no container process left: %.3fs", gone)
    log.info("measured deferred -> trigger running (progress line seen, 1 s polling): %.1fs", pickup)
    # the trigger's own log (the task's trigger log file) says why the Job went away
    wait_until(
        lambda: "task killed while deferred: deleting job" in sched.task_logs(DAG_ID, run_id, TASK_ID),
        timeout=60,
        what="on_kill's log line in the trigger log",
    )
    assert "Trigger cancelled by user action, invoking on_kill" in sched.task_logs(DAG_ID, run_id, TASK_ID)
