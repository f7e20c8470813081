"""A checkpointed stage killed half-way resumes from its checkpoint: the Job controller replaces
the killed pod (backoffLimitPerIndex) and the new pod skips the items the first one saved.

The proof is the work that was not redone: the index's result (``resumed_from``/``processed``)
and the append-only work log next to the checkpoint on the workspace, read from the claim's
directory on the process node."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster import faults
from airflow_provider_kbatch.examples.checkpointed import work
from airflow_provider_kbatch.pipeline import records as rules
from tests.conftest import wait_until
from tests.e2e.dagstest import DagsTest

DAG_ID = "kbatch_example_checkpoint"
ITEMS = 20
ITEM_SECONDS = 0.5
KILL_AFTER = 6  # items index 0 has saved when its pod is killed
log = logging.getLogger(__name__)


def _claim_dir(devcluster: Any, namespace: str) -> Path | None:
    claims = devcluster.core().list_namespaced_persistent_volume_claim(namespace).items
    if not claims or not claims[0].spec.volume_name:
        return None
    pv = devcluster.core().read_persistent_volume(claims[0].spec.volume_name)
    return Path(pv.spec.host_path.path)


def _work_log(devcluster: Any, namespace: str, index: int) -> list[dict[str, Any]]:
    root = _claim_dir(devcluster, namespace)
    if root is None:
        return []
    found = list(root.glob(f"runs/*/checkpoints/crunch/{index}/work.log"))
    if not found:
        return []
    return [json.loads(line) for line in found[0].read_text().splitlines() if line.strip()]


def _pods(devcluster: Any, namespace: str, index: int) -> list[Any]:
    pods = (
        devcluster.core()
        .list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-completion-index={index}")
        .items
    )
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def test_killed_index_resumes_from_its_checkpoint(airflow_env, devcluster, namespace):
    conf = {"namespace": namespace, "item_count": ITEMS, "item_seconds": ITEM_SECONDS}
    started = time.monotonic()
    run = DagsTest(airflow_env, DAG_ID, conf)
    try:
        wait_until(
            lambda: len(_work_log(devcluster, namespace, 0)) >= KILL_AFTER,
            timeout=240,
            interval=0.1,
            what="index 0 to save some checkpoints",
        )
        (victim,) = [p for p in _pods(devcluster, namespace, 0) if p.status.phase == "Running"]
        reply = faults.kill_container(
            devcluster.node_state_dir, namespace, victim.metadata.name, signal="SIGKILL"
        )
        saved_at_kill = len(_work_log(devcluster, namespace, 0))
        log.warning("killed %s after %d items: %s", victim.metadata.name, saved_at_kill, reply)
        code = run.finish(timeout=600)
    except BaseException:
        run.kill()
        log.error("airflow dags test output:\n%s", run.output()[-8000:])
        raise
    wall = time.monotonic() - started
    output = run.output()
    assert code == 0, output[-8000:]
    # one Airflow try: the retry was the Job controller's, inside Kubernetes
    assert airflow_env.task_states(DAG_ID)[("crunch", -1)] == ("success", 1)

    pods = _pods(devcluster, namespace, 0)
    assert [p.status.phase for p in pods] == ["Failed", "Succeeded"], [p.status.phase for p in pods]
    killed, replacement = pods
    assert killed.metadata.name == victim.metadata.name
    assert killed.status.container_statuses[0].state.terminated.exit_code == 137

    result = airflow_env.xcom(DAG_ID, "crunch")["results"]
    first, other = result["0"], result["1"]
    expected_total = sum(work(0, item) for item in range(ITEMS))
    assert first["total"] == expected_total, "an item counted twice or lost"
    assert other == {
        "index": 1,
        "items": ITEMS,
        "resumed_from": 0,
        "processed": ITEMS,
        "total": sum(work(1, item) for item in range(ITEMS)),
    }
    resumed_from = first["resumed_from"]
    assert resumed_from >= KILL_AFTER and first["processed"] == ITEMS - resumed_from

    # the work log: who did which item; the replacement did not redo what was saved
    lines = _work_log(devcluster, namespace, 0)
    by_pod: dict[str, list[int]] = {}
    for line in lines:
        by_pod.setdefault(line["pod"], []).append(line["item"])
    assert set(by_pod) == {killed.metadata.name, replacement.metadata.name}
    assert by_pod[replacement.metadata.name] == list(range(resumed_from, ITEMS))
    assert by_pod[killed.metadata.name][:resumed_from] == list(range(resumed_from))
    assert sorted({i for items in by_pod.values() for i in items}) == list(range(ITEMS))
    redone = len(lines) - ITEMS
    assert redone <= 1, "at most the item in flight at the kill is done twice"

    data = (
        devcluster.core()
        .list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true")
        .items[0]
        .data
    )
    record = rules.read_stage(data, rules.stage_key("crunch"))
    assert record is not None and record.state == "succeeded" and len(record.attempts) == 1
    assert record.output is not None and record.output.records == 2
    log.warning(
        "checkpoint resume: index 0 resumed from item %d of %d, %d item(s) redone, %.1fs of work not redone; "
        "wall time %.1fs",
        resumed_from,
        ITEMS,
        redone,
        resumed_from * ITEM_SECONDS,
        wall,
    )
