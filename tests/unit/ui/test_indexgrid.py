"""The index grid: Job + pods + ledger record -> one state per logical index (pure)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from airflow_provider_kbatch.engine.indexgrid import (
    CODES,
    build_grid,
    collapse,
    job_presence,
    progress_attention,
    record_summary,
    tries_summary,
)
from airflow_provider_kbatch.pipeline.ledger_schema import parse_record
from airflow_provider_kbatch.spec.intervals import IndexSet

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
UID1, UID2 = "uid-try-1", "uid-try-2"


def job(uid: str = UID1, *, completions: int, index_map: str | None = None, **status: Any) -> dict[str, Any]:
    conditions = status.pop("conditions", [])
    annotations = {"kbatch.io/index-map": index_map or f"0-{completions - 1}"}
    return {
        "metadata": {"name": f"kb-job-{uid}", "uid": uid, "annotations": annotations},
        "spec": {"completions": completions, "completionMode": "Indexed"},
        "status": {**status, "conditions": conditions},
    }


def pod(
    local: int,
    phase: str,
    *,
    uid: str = UID1,
    n: int = 0,
    exit_code: int | None = None,
    reason: str | None = None,
    pod_reason: str | None = None,
    disrupted: bool = False,
    unschedulable: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if phase in ("Succeeded", "Failed"):
        state = {
            "terminated": {
                "exitCode": 0 if phase == "Succeeded" else (exit_code if exit_code is not None else 1),
                "reason": reason or ("Completed" if phase == "Succeeded" else "Error"),
                "startedAt": "2026-12-01T11:00:00Z",
                "finishedAt": "2026-12-01T11:00:30Z",
            }
        }
    elif phase == "Running":
        state = {"running": {"startedAt": "2026-12-01T11:59:00Z"}}
    conditions = []
    if disrupted:
        conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"})
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})
    return {
        "metadata": {
            "name": f"p-{uid}-{local}-{n}",
            "creationTimestamp": f"2026-12-01T11:00:{n:02d}Z",
            "labels": {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-completion-index": str(local),
            },
        },
        "status": {
            "phase": phase,
            "reason": pod_reason,
            "conditions": conditions,
            "containerStatuses": [{"name": "main", "state": state}] if state else [],
        },
    }


def record(state: str, attempts: list[dict[str, Any]], completed: str = "", failed: str = "") -> Any:
    raw = {
        "schema_version": 1,
        "task_id": "t",
        "map_index": -1,
        "state": state,
        "transitions": [["pending", "2026-12-01T10:59:00Z"], ["running", "2026-12-01T11:00:00Z"]],
        "attempts": attempts,
        "spec_hash": "h",
        "completed": completed,
        "failed": failed,
    }
    return parse_record(json.dumps(raw))


def attempt(
    try_number: int, uid: str, index_map: str, completed: str = "", failed: str = ""
) -> dict[str, Any]:
    return {
        "try_number": try_number,
        "job": f"kb-job-{uid}",
        "uid": uid,
        "spec_hash": "h",
        "index_map": index_map,
        "completed": completed,
        "failed": failed,
        "started": "2026-12-01T11:00:00Z",
    }


def test_a_running_job_shows_every_state_and_the_reasons_of_each_attempt() -> None:
    pods = [
        pod(0, "Succeeded"),
        pod(1, "Failed", exit_code=137, reason="OOMKilled"),
        pod(1, "Running", n=5),  # retried after an OOM kill
        pod(2, "Failed", exit_code=3),
        pod(2, "Failed", n=3, exit_code=3),  # out of per-index retries
        pod(3, "Failed", exit_code=1),  # waits in backoff
        pod(4, "Pending", unschedulable=True),
        pod(5, "Failed", disrupted=True),
        pod(5, "Running", n=7),
    ]
    grid = build_grid(
        7,
        record=None,
        job=job(completions=7, completedIndexes="0", failedIndexes="2", active=3),
        pods=pods,
        now=NOW,
    )
    assert grid.states == ("succeeded", "running", "failed", "backoff", "pending", "running", "waiting")
    assert grid.reason(1) == "OOMKilled"
    assert grid.reason(2) == "Error"
    assert grid.reason(4) == "Unschedulable"
    assert grid.reason(5) == "Evicted"
    assert grid.reasons() == {"Error": 3, "OOMKilled": 1, "Unschedulable": 1, "Evicted": 1}
    assert [a.exit_code for a in grid.attempts[2]] == [3, 3]
    assert grid.attempts[1][-1].duration == 60.0  # running: from start to now
    assert grid.attempts[0][0].duration == 30.0
    counts = grid.counts()
    assert (
        counts["running"] == 2 and counts["failed"] == 1 and counts["backoff"] == 1 and counts["waiting"] == 1
    )


def test_a_success_policy_leaves_the_rest_skipped_and_a_failed_job_leaves_it_not_run() -> None:
    done = job(
        completions=5,
        completedIndexes="0-1",
        conditions=[{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
    )
    grid = build_grid(5, record=None, job=done, pods=[pod(0, "Succeeded"), pod(1, "Succeeded")], now=NOW)
    assert grid.states == ("succeeded", "succeeded", "skipped", "skipped", "skipped")

    failed = job(
        completions=3,
        failedIndexes="0",
        conditions=[{"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded"}],
    )
    grid = build_grid(3, record=None, job=failed, pods=[pod(0, "Failed")], now=NOW)
    assert grid.states == ("failed", "not_run", "not_run")
    assert grid.reason(1) == "MaxFailedIndexesExceeded"
    assert grid.job_reason == "MaxFailedIndexesExceeded"


def test_a_resumed_try_maps_local_indexes_and_says_which_try_ran_each() -> None:
    # try 1 completed 0-5 and 8-9 of 10; try 2 runs the rest (logical 6, 7) as local 0, 1
    rec = record(
        "running",
        [attempt(1, UID1, "0-9", completed="0-5,8-9", failed="6-7"), attempt(2, UID2, "6-7")],
        completed="0-5,8-9",
    )
    pods = [pod(0, "Succeeded", uid=UID2), pod(1, "Running", uid=UID2), pod(6, "Failed", uid=UID1)]
    grid = build_grid(
        10,
        record=rec,
        job=job(UID2, completions=2, index_map="6-7", completedIndexes="0", active=1),
        pods=pods,
        now=NOW,
    )
    assert grid.states[6] == "succeeded" and grid.states[7] == "running"
    assert grid.ran_in_try[0] == 1 and grid.ran_in_try[6] == 2
    assert [a.try_number for a in grid.attempts[6]] == [1, 2]  # the try-1 pod of logical 6 too
    assert grid.attempts[7][0].pod == "p-uid-try-2-1-0"
    assert grid.to_dict()["try"][:8] == [1, 1, 1, 1, 1, 1, 2, 2]


def test_the_ledger_alone_gives_the_states_when_the_job_is_gone() -> None:
    rec = record(
        "failed", [attempt(1, UID1, "0-3", completed="0-1", failed="3")], completed="0-1", failed="3"
    )
    grid = build_grid(4, record=rec, job=None, pods=None, now=NOW)
    assert grid.states == ("succeeded", "succeeded", "not_run", "failed")
    assert not grid.job_exists and not grid.pods_listed
    assert grid.notes[0].startswith("Job garbage-collected; from the ledger")
    ok = record("succeeded", [attempt(1, UID1, "0-3", completed="0-2")], completed="0-2")
    assert build_grid(4, record=ok, job=None, pods=None, now=NOW).states[3] == "skipped"


def test_nothing_known_yet_is_waiting() -> None:
    grid = build_grid(3, record=None, job=None, pods=None, now=NOW)
    assert grid.states == ("waiting",) * 3
    assert "no Job and no ledger record" in grid.notes[0]


@pytest.mark.parametrize(
    ("states", "ranges"),
    [
        ("", []),
        ("S", [(0, 0, "S")]),
        ("SSSFS", [(0, 2, "S"), (3, 3, "F"), (4, 4, "S")]),
        ("FFRR", [(0, 1, "F"), (2, 3, "R")]),
    ],
)
def test_collapse_keeps_runs_of_equal_states(states: str, ranges: list[tuple[int, int, str]]) -> None:
    assert collapse(list(states)) == ranges


def test_ten_thousand_indexes_stay_small_and_columnar() -> None:
    n = 10_000
    pods = [pod(i, "Succeeded") for i in range(0, n, 2)] + [
        pod(i, "Failed", exit_code=2) for i in range(1, n, 2)
    ]
    grid = build_grid(n, record=None, job=job(completions=n, active=0), pods=pods, now=NOW)
    out = grid.to_dict()
    assert len(out["states"]) == n and set(out["states"]) == {CODES["succeeded"], CODES["backoff"]}
    assert out["counts"]["succeeded"] == 5000 and out["counts"]["backoff"] == 5000
    assert len(grid.ranges()) == n  # alternating: nothing to collapse
    assert len(out["ranges"]) == 2000 and out["ranges_truncated"]
    assert len(json.dumps(out)) < 400_000
    assert out["indexes_by_state"]["succeeded"].startswith("0,2,4")


def test_index_detail_and_record_summary_carry_no_manifest() -> None:
    rec = record("running", [attempt(1, UID1, "0-1")])
    grid = build_grid(2, record=rec, job=job(completions=2, active=1), pods=[pod(0, "Running")], now=NOW)
    detail = grid.index_detail(0)
    assert detail["state"] == "running" and detail["attempts"][0]["pod"] == "p-uid-try-1-0-0"
    assert detail["attempts"][0]["try"] == 1
    summary = record_summary(rec)
    assert summary is not None and summary["attempts"][0]["index_map"] == "0-1"
    assert record_summary(None) is None


def test_progress_names_the_failed_the_backing_off_and_the_retrying_indexes() -> None:
    pods = [
        pod(0, "Succeeded"),
        pod(1, "Failed", exit_code=137, reason="OOMKilled"),  # backing off
        pod(2, "Failed", exit_code=3),
        pod(2, "Failed", n=2, exit_code=3),  # out of retries
        pod(3, "Failed", disrupted=True),
        pod(3, "Running", n=4),  # retrying
        pod(4, "Running"),
    ]
    running = job(completions=5, completedIndexes="0", failedIndexes="2", active=2)
    line = progress_attention(running, pods)
    assert line == "; failed indexes 2; backing off 1; retrying 3 (OOMKilled 1, Error 1, Evicted 1)"
    # a resumed Job names logical indexes
    assert progress_attention(
        job(completions=2, index_map="7,9"), [pod(1, "Failed")], IndexSet.parse("7,9")
    ) == ("; backing off 9 (Error 1)")
    assert progress_attention(running, [pod(0, "Succeeded"), pod(4, "Running")]) == "; failed indexes 2"
    assert progress_attention(None, pods) == ""


def test_long_index_lists_are_capped() -> None:
    pods = [pod(i, "Failed") for i in range(0, 2000, 2)]
    line = progress_attention(job(completions=2000, active=0), pods, limit=40)
    assert line.startswith("; backing off 0,2,4,") and ",..." in line and len(line) < 80


def with_counts(
    a: dict[str, Any], index_map: int, completed: int, failed: int, reason: str | None = None
) -> dict[str, Any]:
    return {**a, "counts": {"index_map": index_map, "completed": completed, "failed": failed}, "reason": reason,
            "ended": "2026-12-01T11:05:00Z"}  # fmt: skip


def test_the_ledger_alone_says_the_job_was_garbage_collected_and_counts_the_attempts_of_each_try() -> None:
    rec = record(
        "succeeded",
        [
            with_counts(
                attempt(1, UID1, "0-9", completed="0-6", failed="7"), 10, 7, 1, "BackoffLimitExceeded"
            ),
            with_counts(attempt(2, UID2, "7-9", completed="7-9"), 3, 3, 0),
        ],
        completed="0-9",
    )
    gone = job_presence(rec, existing=frozenset())
    assert gone["state"] == "garbage_collected"
    assert gone["message"].startswith("Job garbage-collected; from the ledger")
    assert [(j["try"], j["exists"]) for j in gone["jobs"]] == [(1, False), (2, False)]
    there = job_presence(rec, existing=frozenset({f"kb-job-{UID2}"}))
    assert there["state"] == "exists" and [j["exists"] for j in there["jobs"]] == [False, True]
    assert (
        job_presence(rec, None)["state"] == "unknown" and job_presence(None, frozenset())["state"] == "no_job"
    )
    tries = tries_summary(rec)
    assert [
        (t["try"], t["attempts"], t["indexes"], t["completed"], t["failed"], t["reason"]) for t in tries
    ] == [
        (1, 1, 10, 7, 1, "BackoffLimitExceeded"),
        (2, 1, 3, 3, 0, None),
    ]
    assert record_summary(rec)["tries"] == tries  # type: ignore[index]


def test_a_cache_hit_has_no_job_to_garbage_collect() -> None:
    hit = {**attempt(1, UID1, "0-3", completed="0-3"), "job": "cache-hit:run-abc", "uid": None}
    rec = record("succeeded", [hit], completed="0-3")
    assert job_presence(rec, frozenset())["state"] == "cache_hit"
    assert build_grid(4, record=rec, job=None, pods=None, now=NOW).notes[0].startswith("no Job ran")
