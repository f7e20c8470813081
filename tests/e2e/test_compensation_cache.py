"""Compensation and memoized stages, end to end (``airflow dags test`` on the local cluster).

* ``kbatch_test_compensation``: a stage writes half its output and fails; the failed try's
  partial file is quarantined (index 0's committed part stays: the retry resumes), the ledger
  records it on the attempt, ``on_failure`` ran with the failure's context, and the retry ends
  with a clean, complete output.
* ``kbatch_test_cache`` run twice: the second run's ``produce`` is a cache hit (no Job: asked of
  the API server), ``consume`` reads the first run's data through it, the Asset event carries
  the reused digest; ``salted``, whose argument changed, misses and runs. ``bad_options`` fails
  naming ``cache_version`` and ``on_failure`` without sending anything.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import compensation, memo
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.names import run_key, sanitize_label_value

log = logging.getLogger(__name__)


def _ledger(devcluster: Any, namespace: str, dag_id: str, run_id: str) -> dict[str, str]:
    name = rules.ledger_name(dag_id, run_id)
    return devcluster.core().read_namespaced_config_map(name, namespace).data


def _jobs(devcluster: Any, namespace: str, task_id: str, run_id: str) -> list[Any]:
    selector = f"kbatch.io/task-id={sanitize_label_value(task_id)},kbatch.io/run-key={run_key(run_id)}"
    return devcluster.batch().list_namespaced_job(namespace, label_selector=selector).items


def _claim_root(devcluster: Any, namespace: str, claim: str) -> Path:
    pvc = devcluster.core().read_namespaced_persistent_volume_claim(claim, namespace)
    pv = devcluster.core().read_persistent_volume(pvc.spec.volume_name)
    return Path(pv.spec.host_path.path)


def _run_id(airflow_env: Any, dag_id: str) -> str:
    with airflow_env.db() as db:
        return db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)
        ).fetchone()[0]


def _debug(devcluster: Any, namespace: str, proc: Any) -> str:
    pods = devcluster.core().list_namespaced_pod(namespace).items
    statuses = [
        (p.metadata.name, p.status.phase, p.status.init_container_statuses, p.status.container_statuses)
        for p in pods
    ]
    return f"{statuses}\n{(proc.stdout + proc.stderr)[-3000:]}"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.timeout(900)
def test_failed_try_is_quarantined_compensated_and_retried_clean(airflow_env, devcluster, namespace):
    dag_id = "kbatch_test_compensation"
    started = time.monotonic()
    proc = airflow_env.dags_test(dag_id, conf={"namespace": namespace})
    wall = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    assert airflow_env.task_states(dag_id)[("half", -1)] == ("success", 2)
    run_id = _run_id(airflow_env, dag_id)

    # the ledger: try 1 failed and was compensated (quarantine recorded on the attempt)
    data = _ledger(devcluster, namespace, dag_id, run_id)
    key = rules.stage_key("half")
    record = rules.read_stage(data, key)
    assert record is not None and record.state == "succeeded" and len(record.attempts) == 2
    (entry,) = compensation.compensations(data, key)
    assert entry["try_number"] == 1 and entry["state"] == "succeeded", (
        entry,
        _debug(devcluster, namespace, proc),
    )
    assert entry["failed"] == "1" and entry["kept"] == "0" and entry["on_failure"] is True
    assert entry["quarantine"] == compensation.quarantine_subpath(run_id, "half", -1, 1)
    assert str(record.attempts[1].index_map) == "1", "the retry ran index 1 only"

    # on the claim: the partial file is in the quarantine; the output is complete and clean
    workspace = rules.read_workspace(data)
    root = _claim_root(devcluster, namespace, workspace.claim)
    quarantined = _files(root / entry["quarantine"])
    assert quarantined == ["_kbatch_quarantine.json", "part-1.jsonl"], quarantined
    assert (root / entry["quarantine"] / "part-1.jsonl").read_text() == '{"i": 1}\n'
    out = root / f"runs/{run_key(run_id)}/outputs/halves"
    assert _files(out) == [
        "_kbatch/manifest.json",
        "_kbatch/parts/0.json",
        "_kbatch/parts/1.json",
        "part-0.jsonl",
        "part-1.jsonl",
    ]
    manifest = json.loads((out / "_kbatch/manifest.json").read_text())
    assert manifest["records"] == 4 and manifest["indexes"] == "0-1"

    # the on_failure action ran once, in the compensation Job, with the failure's context
    (job,) = _jobs(devcluster, namespace, "half" + compensation.TASK_SUFFIX, run_id)
    assert job.status.succeeded == 1
    pods = devcluster.core().list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}")
    (pod,) = pods.items
    message = json.loads(pod.status.container_statuses[0].state.terminated.message)
    assert message == {
        "KBATCH_FAILED_INDEXES": "1",
        "KBATCH_QUARANTINE_PATH": f"{compensation.RUN_MOUNT}/quarantine/half/try-1",
        "KBATCH_FINAL": "false",
        "KBATCH_TRY_NUMBER": "1",
        "UNDO": "external-table",
        "files": ["_kbatch_quarantine.json", "part-1.jsonl"],
    }, message
    log.warning("compensation e2e: wall %.1fs", wall)


@pytest.mark.timeout(900)
def test_second_run_hits_the_cache_and_a_changed_argument_misses(airflow_env, devcluster, namespace):
    from kubernetes import client

    dag_id = "kbatch_test_cache"
    devcluster.core().create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="kbatch-cache-claim"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}),
            ),
        ),
    )
    walls = []
    runs = []
    for day, salt in (("2026-01-01", "a"), ("2026-01-02", "b")):
        started = time.monotonic()
        proc = airflow_env.dags_test(
            dag_id, conf={"namespace": namespace, "value": 3, "salt": salt}, logical_date=day
        )
        walls.append(time.monotonic() - started)
        out = proc.stdout + proc.stderr
        (airflow_env.home / f"{dag_id}-{day}.log").write_text(out)  # kept for a failure's reader
        assert proc.returncode != 0, "bad_options fails the run"
        states = airflow_env.task_states(dag_id)
        assert states[("bad_options", -1)] == ("failed", 1), "an invalid option is not retried"
        for field in ("cache_version: must be a non-empty string", "on_failure: has no field cmd"):
            assert field in out, f"{field} not named:\n{out[-4000:]}"
        for task in ("produce", "consume", "salted"):
            assert states[(task, -1)][0] == "success", (task, out[-6000:])
        runs.append(_run_id(airflow_env, dag_id))
    first, second = runs
    assert first != second

    # the second run's produce created no Job; salted (changed argument) did; consume too
    assert len(_jobs(devcluster, namespace, "produce", first)) == 1
    assert _jobs(devcluster, namespace, "produce", second) == []
    assert len(_jobs(devcluster, namespace, "salted", second)) == 1
    assert len(_jobs(devcluster, namespace, "consume", second)) == 1
    assert _jobs(devcluster, namespace, "bad_options", second) == []

    # the ledger records the hit, with the first run's output digest
    one = rules.read_stage(_ledger(devcluster, namespace, dag_id, first), rules.stage_key("produce"))
    data = _ledger(devcluster, namespace, dag_id, second)
    two = rules.read_stage(data, rules.stage_key("produce"))
    assert two.state == "succeeded" and two.output.manifest_digest == one.output.manifest_digest
    hit = memo.cache_hit_of(data, rules.stage_key("produce"))
    assert hit is not None and hit["hit"] is True and hit["source_run_id"] == first
    assert memo.cache_hit_of(data, rules.stage_key("salted")) is None

    # consume in the second run read the first run's data through the hit
    assert airflow_env.xcom(dag_id, "consume")["results"]["0"] == {"run_id": first, "records": 3}
    assert airflow_env.xcom(dag_id, "produce")["cache"]["source_run_id"] == first

    # the Asset event of the hit carries the reused digest
    with airflow_env.db() as db:
        extras = [
            json.loads(r[0]) for r in db.execute("select extra from asset_event order by id").fetchall()
        ]
    digests = [e.get("manifest_digest") for e in extras if isinstance(e, dict)]
    assert digests.count(one.output.manifest_digest) >= 2, extras

    # the index is bounded and small
    index = devcluster.core().read_namespaced_config_map(memo.index_name(dag_id, "produce"), namespace)
    entries = memo.read_entries(index.data)
    assert len(entries) == 1 and entries[0].hits == 1 and entries[0].run_id == first
    size = len(json.dumps(index.data))
    log.warning("cache e2e: walls %s, index %d bytes", [round(w, 1) for w in walls], size)
