"""A contract violation at a stage boundary fails fast: the consumer's task fails without an
Airflow retry, with a message naming the stage, the field, what was expected and what was found;
no consumer Job is created; the producer's output and manifest digest are untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.pipeline import records as rules

DAG_ID = "kbatch_example_contract_violation"


def _manifest(devcluster: Any, namespace: str) -> Path:
    (claim,) = devcluster.core().list_namespaced_persistent_volume_claim(namespace).items
    pv = devcluster.core().read_persistent_volume(claim.spec.volume_name)
    (path,) = Path(pv.spec.host_path.path).glob("runs/*/outputs/orders/_kbatch/manifest.json")
    return path


def test_incompatible_contract_fails_fast_and_leaves_upstream_untouched(airflow_env, devcluster, namespace):
    proc = airflow_env.dags_test(DAG_ID, conf={"namespace": namespace})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-6000:]
    states = airflow_env.task_states(DAG_ID)
    assert states[("produce_orders", -1)][0] == "success"
    assert states[("consume_orders", -1)] == ("failed", 1), "retries=2 must not apply to a contract violation"
    assert "stage 'consume_orders': 1 input problem(s), nothing was submitted" in output
    assert (
        "input 'orders' (output of stage 'produce_orders'): field 'amount_cents': expected int, found str "
        "(contract orders 1.0)"
    ) in output

    jobs = devcluster.batch().list_namespaced_job(namespace, label_selector="kbatch.io/dag-id").items
    assert [j.metadata.labels["kbatch.io/task-id"] for j in jobs] == ["produce_orders"]

    (config_map,) = (
        devcluster.core().list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true").items
    )
    data = config_map.data
    assert rules.read_stage(data, rules.stage_key("consume_orders")) is None, "the consumer never started"
    recorded = rules.stage_output(data, rules.stage_key("produce_orders"))
    assert recorded is not None and recorded.contract == {"name": "orders", "version": "1.0"}
    manifest = _manifest(devcluster, namespace)
    assert "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest() == recorded.manifest_digest
    # nothing of the consumer was written next to the producer's output
    outputs = {p.name for p in manifest.parents[2].iterdir()}
    assert outputs == {"orders"}
