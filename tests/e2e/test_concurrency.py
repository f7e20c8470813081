"""Concurrency across runs under the real deployment (scheduler, LocalExecutor, triggerer on
PostgreSQL) against the local cluster: one backfill of five dates at once of
``kbatch_test_concurrency`` (tests/e2e/dags/kbatch_test_concurrency.py).

* ``forbid`` (``concurrency_policy="Forbid"``): every run's Job completed, and no two of them
  overlapped (Job ``startTime`` / ``completionTime``); the waits were deferred and logged
  (``waiting for run X's Job Y (concurrency_policy=Forbid)``).
* ``replace`` (``concurrency_policy="Replace"``): one Job is left, of the run holding the stage's
  lock, and it completed; every other run's task failed on its first try (``retries=1`` did not
  apply), its Job is gone and its ledger says which run replaced it.

Beside it, ``kbatch_test_concurrency_invalid``'s bad ``disruption_budget`` and
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
from tests.e2e.scheduler import AirflowScheduler

DAG_ID = "kbatch_test_concurrency"
INVALID = "kbatch_test_concurrency_invalid"
FROM, TO = "2026-01-01", "2026-01-05"
MANAGED = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"


def _time(value: Any) -> datetime.datetime:
    assert value is not None
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)


def _jobs(devcluster: Any, namespace: str, task_id: str) -> list[Any]:
    selector = f"{MANAGED},{names.LABEL_DAG_ID}={DAG_ID},{names.LABEL_TASK_ID}={task_id}"
    return list(devcluster.batch().list_namespaced_job(namespace, label_selector=selector).items)


@pytest.mark.timeout(900)
def test_backfill_forbid_never_overlaps_and_replace_keeps_one(
    airflow_deployment: AirflowScheduler, devcluster: Any, record_property: Any
) -> None:
    sched = airflow_deployment
    namespace = devcluster.namespace("concurrency")
    sched.wait_dag(DAG_ID, timeout=120)
    sched.wait_dag(INVALID, timeout=120)
    started = time.monotonic()
    backfill_id = sched.backfill(DAG_ID, FROM, TO, conf={"namespace": namespace}, max_active_runs=5)
    sched.unpause(DAG_ID)
    invalid_run = f"manual__{secrets.token_hex(4)}"
    sched.trigger(INVALID, invalid_run, conf={"namespace": namespace})
    sched.unpause(INVALID)
    runs = sched.wait_runs(DAG_ID, 5, backfill_id=backfill_id, timeout=600)
    elapsed = time.monotonic() - started
    run_ids = {r.run_id for r in runs}
    assert len(run_ids) == 5, runs
    states = {r.run_id: sched.task_instances(DAG_ID, r.run_id) for r in runs}
    report = sched.report(DAG_ID)

    # Forbid: every run's stage succeeded on its first try, their Jobs never overlapped
    for run_id, tis in states.items():
        assert tis[("forbid", -1)] == ("success", 1), (run_id, tis, report)
    forbid = sorted(_jobs(devcluster, namespace, "forbid"), key=lambda j: _time(j.status.start_time))
    assert sorted(j.metadata.annotations[names.ANNOTATION_RUN_ID] for j in forbid) == sorted(run_ids)
    spans = [(_time(j.status.start_time), _time(j.status.completion_time)) for j in forbid]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"two Forbid Jobs overlapped: {spans}"
    logs = sched.task_logs(DAG_ID, task_id="forbid")
    assert "(concurrency_policy=Forbid)" in logs and "waiting for run " in logs, logs[-4000:]

    # Replace: one run kept its Job (the lock's holder), it completed; the others were replaced
    replace = _jobs(devcluster, namespace, "replace")
    assert len(replace) == 1, [j.metadata.name for j in replace]
    survivor = replace[0].metadata.annotations[names.ANNOTATION_RUN_ID]
    conditions = {c.type: c.status for c in replace[0].status.conditions or []}
    assert conditions.get("Complete") == "True", conditions
    lock = devcluster.core().read_namespaced_config_map(
        lock_name(names.JobIdentity(DAG_ID, "replace", survivor)), namespace
    )
    assert holder_of(lock.data).run_id == survivor  # type: ignore[union-attr]
    for run_id, tis in states.items():
        ledger = devcluster.core().read_namespaced_config_map(rules.ledger_name(DAG_ID, run_id), namespace)
        record = rules.read_stage(ledger.data, rules.stage_key("replace"))
        assert record is not None, (run_id, ledger.data)
        if run_id == survivor:
            assert tis[("replace", -1)] == ("success", 1), (run_id, tis)
            assert record.state == "succeeded", record
            continue
        assert tis[("replace", -1)] == ("failed", 1), (run_id, tis, report)  # final: no retry
        reason = record.attempts[-1].reason or ""
        assert record.state == "failed" and reason.startswith(REPLACED), record
        by = reason[len(REPLACED) :].split(" ", 1)[0]
        assert by in run_ids and by != run_id, reason

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
        f"concurrency backfill of 5 dates: {elapsed:.1f}s; Forbid gaps between Jobs {gaps}; "
        f"Replace survivor {survivor}"
    )
