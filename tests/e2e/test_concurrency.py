"""Concurrency across runs under the real deployment (scheduler, LocalExecutor, triggerer on
PostgreSQL) against the local cluster (DAGs: tests/e2e/dags/kbatch_test_concurrency.py).

* ``Forbid``: one backfill of five dates at once of ``kbatch_test_concurrency``: every run's Job
  completed and no two of them overlapped (Job ``startTime`` / ``completionTime``); the waits were
  deferred and logged (``waiting for run X's Job Y (concurrency_policy=Forbid)``).
* ``Replace``: a run of ``kbatch_test_concurrency_replace`` whose stage sleeps for minutes, then a
  newer run once the older one's pod runs: the older Job is deleted, the older run's ledger says it
  was replaced by the newer run, its task fails (not up for retry), and the newer run succeeds.

Meanwhile ``kbatch_test_concurrency_invalid``'s bad ``disruption_budget`` and
``concurrency_policy`` fail on the first try, naming both fields, with nothing submitted.
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import time
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.concurrency import REPLACED, holder_of, lock_name
from tests.conftest import wait_until
from tests.e2e.scheduler import AirflowScheduler

DAG_ID = "kbatch_test_concurrency"
REPLACE = "kbatch_test_concurrency_replace"
INVALID = "kbatch_test_concurrency_invalid"
FROM, TO = "2026-01-01", "2026-01-05"
MANAGED = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"


def _time(value: Any) -> datetime.datetime:
    assert value is not None
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)


def _jobs(devcluster: Any, namespace: str, task_id: str, dag_id: str = DAG_ID) -> list[Any]:
    selector = f"{MANAGED},{names.LABEL_DAG_ID}={dag_id},{names.LABEL_TASK_ID}={task_id}"
    return list(devcluster.batch().list_namespaced_job(namespace, label_selector=selector).items)


def _running(devcluster: Any, namespace: str, run_id: str) -> bool:
    for job in _jobs(devcluster, namespace, "replace", REPLACE):
        if job.metadata.annotations.get(names.ANNOTATION_RUN_ID) == run_id and (job.status.active or 0) > 0:
            pods = devcluster.core().list_namespaced_pod(
                namespace, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
            )
            return any(p.status.phase == "Running" for p in pods.items)
    return False


@pytest.mark.timeout(900)
def test_forbid_never_overlaps_in_a_backfill_and_replace_deletes_the_older_job(
    airflow_deployment: AirflowScheduler, devcluster: Any, record_property: Any
) -> None:
    sched = airflow_deployment
    namespace = devcluster.namespace("concurrency")
    for dag_id in (DAG_ID, REPLACE, INVALID):
        sched.wait_dag(dag_id, timeout=120)
    started = time.monotonic()
    backfill_id = sched.backfill(DAG_ID, FROM, TO, conf={"namespace": namespace}, max_active_runs=5)
    sched.unpause(DAG_ID)
    token = secrets.token_hex(3)
    older, newer, invalid_run = f"manual__older_{token}", f"manual__newer_{token}", f"manual__{token}"
    sched.trigger(REPLACE, older, conf={"namespace": namespace, "sleep": 600})
    sched.trigger(INVALID, invalid_run, conf={"namespace": namespace})
    sched.unpause(REPLACE)
    sched.unpause(INVALID)
    wait_until(
        lambda: _running(devcluster, namespace, older), timeout=300, what="the older run's pod running"
    )
    sched.trigger(REPLACE, newer, conf={"namespace": namespace, "sleep": 1})

    runs = sched.wait_runs(DAG_ID, 5, backfill_id=backfill_id, timeout=600)
    elapsed = time.monotonic() - started
    run_ids = {r.run_id for r in runs}
    assert len(run_ids) == 5, runs
    report = sched.report(DAG_ID)

    # Forbid: every run's stage succeeded (a second try only when the loaded machine made a task
    # start time out: retries=1 absorbs that), and their Jobs never overlapped
    for run in runs:
        assert sched.task_instances(DAG_ID, run.run_id)[("forbid", -1)][0] == "success", report
    forbid = sorted(_jobs(devcluster, namespace, "forbid"), key=lambda j: _time(j.status.start_time))
    assert sorted({j.metadata.annotations[names.ANNOTATION_RUN_ID] for j in forbid}) == sorted(run_ids)
    assert all(j.status.completion_time for j in forbid), [j.status for j in forbid]
    spans = [(_time(j.status.start_time), _time(j.status.completion_time)) for j in forbid]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"two Forbid Jobs overlapped: {spans}"
    logs = sched.task_logs(DAG_ID, task_id="forbid")
    assert "(concurrency_policy=Forbid)" in logs and "waiting for run " in logs, logs[-4000:]

    # Replace: the older run's Job was deleted, its ledger names the newer run, its task failed
    replace_runs = {r.run_id: r for r in sched.wait_runs(REPLACE, 2, timeout=300)}
    assert replace_runs[newer].state == "success", sched.report(REPLACE)
    assert replace_runs[older].state == "failed", sched.report(REPLACE)
    state, tries = sched.task_instances(REPLACE, older)[("replace", -1)]
    assert state == "failed", (state, tries)  # final: failed, not up for retry
    log_file = (
        sched.log_dir / f"dag_id={REPLACE}" / f"run_id={older}" / "task_id=replace" / f"attempt={tries}.log"
    )
    assert f"{REPLACED}{newer}" in log_file.read_text(errors="replace")
    left = _jobs(devcluster, namespace, "replace", REPLACE)
    assert [j.metadata.annotations[names.ANNOTATION_RUN_ID] for j in left] == [newer]
    assert {c.type: c.status for c in left[0].status.conditions or []}.get("Complete") == "True"
    ledger = devcluster.core().read_namespaced_config_map(rules.ledger_name(REPLACE, older), namespace)
    record = rules.read_stage(ledger.data, rules.stage_key("replace"))
    assert record is not None and record.state == "failed", record
    assert (record.attempts[-1].reason or "").startswith(f"{REPLACED}{newer} (concurrency_policy=Replace)")
    lock = devcluster.core().read_namespaced_config_map(
        lock_name(names.JobIdentity(REPLACE, "replace", newer)), namespace
    )
    assert holder_of(lock.data).run_id == newer  # type: ignore[union-attr]

    # the invalid stage: failed on the first try, both fields named, nothing submitted
    invalid = sched.wait_runs(INVALID, 1, timeout=120)
    assert [r.state for r in invalid if r.run_id == invalid_run] == ["failed"]
    assert sched.task_instances(INVALID, invalid_run)[("invalid", -1)] == ("failed", 1)
    invalid_log = sched.task_logs(INVALID, invalid_run)
    for message in (
        "disruption_budget: needs exactly one of min_available or max_unavailable",
        "concurrency_policy: must be one of Allow, Forbid, Replace, got 'Sometimes'",
    ):
        assert message in invalid_log, invalid_log[-4000:]
    inv_selector = f"{MANAGED},{names.LABEL_DAG_ID}={INVALID}"
    assert devcluster.batch().list_namespaced_job(namespace, label_selector=inv_selector).items == []

    gaps = [(b[0] - a[1]).total_seconds() for a, b in itertools.pairwise(spans)]
    record_property("backfill_s", round(elapsed, 1))
    record_property("forbid_gaps_s", gaps)
    print(  # noqa: T201 -- the figures, shown with -s
        f"Forbid backfill of 5 dates: {elapsed:.1f}s; gaps between the Jobs {gaps} s"
    )
