"""``disruption_budget=`` on the real control plane (the Job, disruption and garbage-collector
controllers, the Eviction API of the API server, the process node's two nodes).

``KbatchJobOperator.execute`` (synchronous mode, so the test can drain while it waits) creates the
stage's Job and right after it the PodDisruptionBudget: owned by the Job, selecting its pods by the
Job's uid, ``minAvailable`` 2 for parallelism 2. A drain of a node running one of the pods is
refused (429) for as long as the budget holds; the pods keep running, the Job completes and no pod
failure is counted (no retry burned). Re-running the operator's submission path for the same task
instance adopts the Job and keeps its PDB (one, same uid). Deleting the Job takes the PDB with it.
"""

from __future__ import annotations

import secrets
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster import faults
from airflow_provider_kbatch.engine.disruption import ensure_budget
from airflow_provider_kbatch.engine.submission import plan_submission
from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import spec_hash
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JobIdentity, selector_for
from tests.conftest import ClusterHandle, wait_until

pytestmark = pytest.mark.integration

# long enough to outlast the refused drain below, short enough for the suite
SLEEP_SECONDS = 12
DRAIN_TIMEOUT = 4.0


def context(identity: JobIdentity) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id=identity.dag_id,
        task_id=identity.task_id,
        run_id=identity.run_id,
        map_index=identity.map_index,
        try_number=identity.try_number,
        xcom={},
    )
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    return {"ti": ti}


@pytest.mark.timeout(300)
def test_a_drain_waits_for_the_stages_budget_and_burns_no_retry(
    devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    hook = KbatchHook()
    identity = JobIdentity(
        dag_id="kbatch_test_pdb", task_id="guarded", run_id=f"manual__{secrets.token_hex(4)}"
    )
    operator = KbatchJobOperator(
        task_id=identity.task_id,
        namespace=namespace,
        image="python:3.11-slim",
        command=["python", "-c", f"import time; time.sleep({SLEEP_SECONDS})"],
        completions=2,
        parallelism=2,
        disruption_budget={"min_available": 2},
        deferrable=False,
        stream_logs=False,
    )
    ctx = context(identity)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = operator.execute(ctx)
        except BaseException as err:  # reported by the main thread
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    jobs = wait_until(lambda: hook.list_jobs(namespace, selector_for(identity)), timeout=60, what="the Job")
    job = jobs[0]
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]

    # the PDB: named like the Job, owned by it, selecting exactly its pods
    pdb = wait_until(lambda: hook.get_pod_disruption_budget(namespace, name), timeout=30, what="the PDB")
    assert pdb["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
    ], pdb["metadata"]
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"] == {"matchLabels": {CONTROLLER_UID_LABEL: uid}}

    def running_pods() -> list[dict[str, Any]]:
        pods = hook.list_pods(namespace, f"{CONTROLLER_UID_LABEL}={uid}")
        return [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]

    pods = wait_until(lambda: len(running_pods()) == 2 and running_pods(), timeout=90, what="2 pods running")
    wait_until(
        lambda: (
            (s := (hook.get_pod_disruption_budget(namespace, name) or {}).get("status") or {}).get(
                "currentHealthy"
            )
            == 2
            and s.get("disruptionsAllowed") == 0
        ),
        timeout=30,
        what="the disruption controller counting both pods healthy",
    )

    # drain the node of the first pod: every eviction is refused (429) while the budget holds
    node = pods[0]["spec"]["nodeName"]
    started = time.monotonic()
    try:
        with pytest.raises(faults.FaultError, match="evictions still refused"):
            faults.drain(devcluster.kubeconfig, node, timeout=DRAIN_TIMEOUT)
    finally:
        faults.uncordon(devcluster.kubeconfig, node)
    refused_for = time.monotonic() - started
    assert sorted(p["metadata"]["uid"] for p in running_pods()) == sorted(p["metadata"]["uid"] for p in pods)

    worker.join(timeout=180)
    assert not worker.is_alive(), "the operator did not return"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["completed_indexes"] == "0-1", outcome["result"]
    done = hook.get_job(namespace, name)
    assert done is not None
    assert not done["status"].get("failed"), done["status"]  # no pod failure counted
    for pod in hook.list_pods(namespace, f"{CONTROLLER_UID_LABEL}={uid}"):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        assert conditions.get("DisruptionTarget") != "True", pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Succeeded", pod["metadata"]["name"]

    # adopted on a re-run of the submission path: the same Job, the same single PDB
    plan = plan_submission(
        identity=identity,
        spec_hash=spec_hash(operator.stage(ctx).spec),
        completions=2,
        existing_jobs=hook.list_jobs(namespace, selector_for(identity)),
        completed=IndexSet.of([]),
        resume=True,
    )
    assert plan.action == "adopt" and plan.existing is not None, plan
    again = ensure_budget(hook, namespace, plan.existing, {"min_available": 2})
    assert again is not None and again["metadata"]["uid"] == pdb["metadata"]["uid"]

    # owned by the Job: it goes with it
    hook.delete_job(namespace, name, propagation="Background")
    wait_until(
        lambda: hook.get_pod_disruption_budget(namespace, name) is None,
        timeout=60,
        what="the garbage collector deleting the PDB with its Job",
    )
    record_property("drain_refused_s", round(refused_for, 2))
