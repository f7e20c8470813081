from __future__ import annotations

import copy
from typing import Any

import pytest

from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.status import (
    IndexFailure,
    JobOutcome,
    describe_failure,
    job_outcome,
    pod_failures,
    pod_index,
    pod_results,
    progress_line,
)

NS = "batch"
JOB = "kb-etl-daily-extract-6f1c2a9b3d-g1"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILJOB_MESSAGE = (
    f"Container main for pod {NS}/{JOB}-3-x7k2p failed with exit code 42 matching FailJob rule at index 1"
)


def _cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": "2024-01-01T00:05:00Z",
        "lastTransitionTime": "2024-01-01T00:05:00Z",
    }


def _job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    """A Job as the API server returns it (camelCase JSON)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": JOB,
            "namespace": NS,
            "uid": "0b6f4c4e-1c7e-4d9a-9d0b-9f3e2f1a6b11",
            "resourceVersion": "4711",
        },
        "spec": {
            "completions": 10,
            "parallelism": 4,
            "completionMode": "Indexed",
            "backoffLimit": 6,
            "suspend": False,
            "podReplacementPolicy": "Failed",
            "selector": {
                "matchLabels": {"batch.kubernetes.io/controller-uid": "0b6f4c4e-1c7e-4d9a-9d0b-9f3e2f1a6b11"}
            },
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "etl:1"}]}
            },
        },
        "status": {
            "startTime": "2024-01-01T00:00:00Z",
            "uncountedTerminatedPods": {},
            **status,
            **({"conditions": conditions} if conditions is not None else {}),
        },
    }


RUNNING = _job(active=4, ready=3, terminating=0, succeeded=5, failed=1, completedIndexes="0-3,5")
COMPLETE = _job(
    [_cond("SuccessCriteriaMet", reason="CompletionsReached", message="Reached expected number of succeeded pods"),
     _cond("Complete", reason="CompletionsReached", message="Reached expected number of succeeded pods")],
    active=0, ready=0, terminating=0, succeeded=10, completedIndexes="0-9", completionTime="2024-01-01T00:09:00Z",
)  # fmt: skip
BACKOFF = _job(
    [_cond("FailureTarget", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"),
     _cond("Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")],
    active=0, failed=7, succeeded=8, completedIndexes="0-2,4-8",
)  # fmt: skip
FAILJOB = _job(
    [_cond("FailureTarget", reason="PodFailurePolicy", message=FAILJOB_MESSAGE),
     _cond("Failed", reason="PodFailurePolicy", message=FAILJOB_MESSAGE)],
    failed=1, succeeded=3, completedIndexes="0-2",
)  # fmt: skip


@pytest.mark.parametrize(
    ("job", "finished", "succeeded", "reason", "retryable", "signals"),
    [
        (RUNNING, False, False, None, True, ()),
        (COMPLETE, True, True, "CompletionsReached", True, ("SuccessCriteriaMet",)),
        (BACKOFF, True, False, "BackoffLimitExceeded", True, ("FailureTarget",)),
        (FAILJOB, True, False, "PodFailurePolicy", False, ("FailureTarget",)),
        # a FailJob rule on a pod condition
        (
            _job(
                [
                    _cond(
                        "Failed",
                        reason="PodFailurePolicy",
                        message=f"Pod {NS}/p has condition ConfigIssue matching FailJob rule at index 0",
                    )
                ]
            ),
            True,
            False,
            "PodFailurePolicy",
            False,
            (),
        ),
        # early signals only: not finished yet (pods are being terminated)
        (
            _job(
                [_cond("FailureTarget", reason="PodFailurePolicy", message=FAILJOB_MESSAGE)],
                active=2,
                terminating=2,
            ),
            False,
            False,
            "PodFailurePolicy",
            False,
            ("FailureTarget",),
        ),
        (
            _job(
                [_cond("SuccessCriteriaMet", reason="SuccessPolicy", message="Matched rules at index 0")],
                terminating=3,
            ),
            False,
            False,
            "SuccessPolicy",
            True,
            ("SuccessCriteriaMet",),
        ),
        # the status is the STRING "True": "False" / "Unknown" never finish a Job
        (_job([_cond("Complete", status="False")]), False, False, None, True, ()),
        (
            _job([_cond("Failed", status="False", reason="BackoffLimitExceeded")]),
            False,
            False,
            None,
            True,
            (),
        ),
        (_job([_cond("Failed", status="Unknown")]), False, False, None, True, ()),
        (
            _job(
                [_cond("FailureTarget", status="False", reason="PodFailurePolicy", message=FAILJOB_MESSAGE)]
            ),
            False,
            False,
            None,
            True,
            (),
        ),
        (
            _job([{**_cond("Complete"), "status": True}]),
            False,
            False,
            None,
            True,
            (),
        ),  # a bool is not the API's string
        (
            _job(
                [
                    _cond(
                        "Failed",
                        reason="DeadlineExceeded",
                        message="Job was active longer than specified deadline",
                    )
                ]
            ),
            True,
            False,
            "DeadlineExceeded",
            True,
            (),
        ),
        # a PodFailurePolicy reason whose message names another action is not a FailJob verdict
        (
            _job(
                [
                    _cond(
                        "Failed",
                        reason="PodFailurePolicy",
                        message="Container main for pod b/p failed with exit code 3 matching FailIndex rule at index 0",
                    )
                ]
            ),
            True,
            False,
            "PodFailurePolicy",
            True,
            (),
        ),
        (
            _job(
                [
                    _cond(
                        "Failed",
                        reason="MaxFailedIndexesExceeded",
                        message="Job has exceeded the specified maximal number of failed indexes",
                    )
                ],
                failedIndexes="3,7",
            ),
            True,
            False,
            "MaxFailedIndexesExceeded",
            True,
            (),
        ),
        (
            _job(
                [_cond("Failed", reason="FailedIndexes", message="Job has failed indexes")], failedIndexes="3"
            ),
            True,
            False,
            "FailedIndexes",
            True,
            (),
        ),
        (
            _job(
                [
                    _cond("SuccessCriteriaMet", reason="SuccessPolicy"),
                    _cond("Complete", reason="SuccessPolicy"),
                ]
            ),
            True,
            True,
            "SuccessPolicy",
            True,
            ("SuccessCriteriaMet",),
        ),
    ],
)
def test_job_outcome(
    job: dict, finished: bool, succeeded: bool, reason: str | None, retryable: bool, signals: tuple
) -> None:
    before = copy.deepcopy(job)
    outcome = job_outcome(job)
    assert (
        outcome.finished,
        outcome.succeeded,
        outcome.reason,
        outcome.retryable,
        outcome.early_signals,
    ) == (
        finished,
        succeeded,
        reason,
        retryable,
        signals,
    )
    assert job == before  # pure


def test_job_outcome_counts_and_indexes() -> None:
    o = job_outcome(RUNNING)
    assert (o.active, o.ready, o.terminating, o.succeeded_pods, o.failed_pods) == (4, 3, 0, 5, 1)
    assert o.completions == 10 and o.indexed
    assert o.completed == IndexSet.parse("0-3,5") and o.failed == IndexSet()
    assert o.start_time == "2024-01-01T00:00:00Z" and o.completion_time is None
    assert job_outcome(COMPLETE).completion_time == "2024-01-01T00:09:00Z"
    assert job_outcome(
        _job([_cond("Failed", reason="MaxFailedIndexesExceeded")], failedIndexes="3,7")
    ).failed == IndexSet.parse("3,7")
    assert job_outcome(FAILJOB).message == FAILJOB_MESSAGE


def test_job_outcome_of_a_fresh_or_odd_job() -> None:
    fresh = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB},
        "spec": {"completions": 3, "completionMode": "NonIndexed"},
    }
    o = job_outcome(fresh)
    assert not o.finished and not o.suspended and o.retryable
    assert (o.active, o.completed, o.indexed, o.completions) == (0, IndexSet(), False, 3)
    odd = _job(completedIndexes="garbage", active="x")
    assert job_outcome(odd).completed == IndexSet() and job_outcome(odd).active == 0


@pytest.mark.parametrize(
    ("conditions", "spec_suspend", "suspended"),
    [
        ([_cond("Suspended", reason="JobSuspended", message="Job suspended")], True, True),
        ([], True, True),  # just created suspended (Kueue), no condition yet
        ([_cond("Suspended", status="False", reason="JobResumed", message="Job resumed")], False, False),
        ([], False, False),
    ],
)
def test_suspended(conditions: list, spec_suspend: bool, suspended: bool) -> None:
    job = _job(conditions)
    job["spec"]["suspend"] = spec_suspend
    assert job_outcome(job).suspended is suspended


# --------------------------------------------------------------------------- pods


def _pod(
    index: int | None,
    phase: str,
    *,
    name: str | None = None,
    created: str = "2024-01-01T00:01:00Z",
    container_statuses: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    message: str | None = None,
    index_as_label: bool = True,
) -> dict[str, Any]:
    """A pod of the Job as the API server returns it."""
    marks = {INDEX_KEY: str(index)} if index is not None else {}
    meta: dict[str, Any] = {
        "name": name or f"{JOB}-{index}-abcde",
        "namespace": NS,
        "uid": f"uid-{name or index}",
        "creationTimestamp": created,
        "labels": {"batch.kubernetes.io/job-name": JOB, "job-name": JOB, **(marks if index_as_label else {})},
        "annotations": {**marks, "batch.kubernetes.io/job-completion-index": str(index)}
        if index is not None
        else {},
        "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": "0b6f", "controller": True}
        ],
    }
    status: dict[str, Any] = {
        "phase": phase,
        "startTime": created,
        "conditions": conditions or [_cond("Initialized"), _cond("PodScheduled")],
    }
    if container_statuses is not None:
        status["containerStatuses"] = container_statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"restartPolicy": "Never"},
        "status": status,
    }


def _terminated(name: str, exit_code: int, reason: str, message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": "2024-01-01T00:01:05Z",
        "finishedAt": "2024-01-01T00:02:00Z",
        "containerID": "containerd://abc",
    }
    if message is not None:
        term["message"] = message
    return {
        "name": name,
        "state": {"terminated": term},
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": "etl:1",
        "imageID": "etl@sha256:1",
        "started": False,
    }


OOM = _pod(3, "Failed", container_statuses=[_terminated("main", 137, "OOMKilled")])
ERROR = _pod(
    7,
    "Failed",
    container_statuses=[
        _terminated("main", 1, "Error", "Traceback (most recent call last):\nValueError: bad row 17\n")
    ],
)
EVICTED = _pod(
    4,
    "Failed",
    reason="Evicted",
    message="The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
    container_statuses=[
        _terminated(
            "main",
            137,
            "ContainerStatusUnknown",
            "The container could not be located when the pod was terminated",
        )
    ],
    conditions=[
        _cond(
            "DisruptionTarget", reason="TerminationByKubelet", message="The node was low on resource: memory."
        )
    ],
)
PREEMPTED = _pod(
    5,
    "Failed",
    container_statuses=[_terminated("main", 143, "Error")],
    conditions=[
        _cond(
            "DisruptionTarget",
            reason="PreemptionByScheduler",
            message="default-scheduler: preempting to accommodate a higher priority pod",
        )
    ],
)
INIT_FAILED = _pod(
    6,
    "Failed",
    init_statuses=[_terminated("fetch", 2, "Error", "curl: (6) Could not resolve host")],
    container_statuses=[
        {
            "name": "main",
            "state": {"waiting": {"reason": "PodInitializing"}},
            "ready": False,
            "restartCount": 0,
            "image": "etl:1",
            "imageID": "",
        }
    ],
)
DEADLINE = _pod(
    8,
    "Failed",
    reason="DeadlineExceeded",
    message="Pod was active on the node longer than the specified deadline",
)
NOT_DISRUPTED = _pod(
    9,
    "Failed",
    container_statuses=[_terminated("main", 2, "Error")],
    conditions=[_cond("DisruptionTarget", status="False")],
)
RUNNING_POD = _pod(
    0,
    "Running",
    container_statuses=[
        {
            "name": "main",
            "state": {"running": {"startedAt": "2024-01-01T00:01:05Z"}},
            "ready": True,
            "restartCount": 0,
        }
    ],
)
OLD_SERVER = _pod(2, "Failed", container_statuses=[_terminated("main", 3, "Error")], index_as_label=False)


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (
            OOM,
            IndexFailure(3, f"{JOB}-3-abcde", "main", 137, "OOMKilled", None, False, "2024-01-01T00:01:00Z"),
        ),
        (
            ERROR,
            IndexFailure(
                7,
                f"{JOB}-7-abcde",
                "main",
                1,
                "Error",
                "Traceback (most recent call last):\nValueError: bad row 17",
                False,
                "2024-01-01T00:01:00Z",
            ),
        ),
        (
            EVICTED,
            IndexFailure(
                4,
                f"{JOB}-4-abcde",
                "main",
                137,
                "Evicted",
                "The container could not be located when the pod was terminated",
                True,
                "2024-01-01T00:01:00Z",
            ),
        ),
        (
            PREEMPTED,
            IndexFailure(
                5,
                f"{JOB}-5-abcde",
                "main",
                143,
                "Error",
                "default-scheduler: preempting to accommodate a higher priority pod",
                True,
                "2024-01-01T00:01:00Z",
            ),
        ),
        (
            INIT_FAILED,
            IndexFailure(
                6,
                f"{JOB}-6-abcde",
                "fetch",
                2,
                "Error",
                "curl: (6) Could not resolve host",
                False,
                "2024-01-01T00:01:00Z",
            ),
        ),
        (
            DEADLINE,
            IndexFailure(
                8,
                f"{JOB}-8-abcde",
                None,
                None,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
                False,
                "2024-01-01T00:01:00Z",
            ),
        ),
        (
            NOT_DISRUPTED,
            IndexFailure(9, f"{JOB}-9-abcde", "main", 2, "Error", None, False, "2024-01-01T00:01:00Z"),
        ),
        (
            OLD_SERVER,
            IndexFailure(2, f"{JOB}-2-abcde", "main", 3, "Error", None, False, "2024-01-01T00:01:00Z"),
        ),
    ],
)
def test_pod_failures_read_each_kind_of_failure(pod: dict, expected: IndexFailure) -> None:
    assert pod_failures([pod]) == [expected]


def test_pod_failures_skip_live_and_succeeded_pods_and_sort() -> None:
    ok = _pod(1, "Succeeded", container_statuses=[_terminated("main", 0, "Completed")])
    failures = pod_failures(
        [
            ERROR,
            RUNNING_POD,
            OOM,
            ok,
            _pod(None, "Failed", name="nonindexed-x", container_statuses=[_terminated("main", 1, "Error")]),
        ]
    )
    assert [(f.index, f.pod) for f in failures] == [
        (None, "nonindexed-x"),
        (3, OOM["metadata"]["name"]),
        (7, ERROR["metadata"]["name"]),
    ]


def test_pod_failures_prefer_the_container_that_failed() -> None:
    pod = _pod(
        1,
        "Failed",
        container_statuses=[_terminated("sidecar", 0, "Completed"), _terminated("main", 42, "Error", "boom")],
    )
    (failure,) = pod_failures([pod])
    assert (failure.container, failure.exit_code, failure.message) == ("main", 42, "boom")


def test_long_messages_keep_their_tail() -> None:
    long = "x" * 5000 + "THE END"
    (failure,) = pod_failures([_pod(1, "Failed", container_statuses=[_terminated("main", 1, "Error", long)])])
    assert (
        failure.message is not None and len(failure.message) == 1000 and failure.message.endswith("THE END")
    )


def test_pod_failures_with_index_map_are_logical() -> None:
    failures = pod_failures(
        [
            _pod(0, "Failed", container_statuses=[_terminated("main", 1, "Error")]),
            _pod(2, "Failed", container_statuses=[_terminated("main", 1, "Error")]),
        ],
        index_map=IndexSet.parse("4,10-11"),
    )
    assert [f.index for f in failures] == [4, 11]


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({INDEX_KEY: "3"}, {}, 3),
        ({}, {INDEX_KEY: "12"}, 12),
        ({INDEX_KEY: "x"}, {INDEX_KEY: "4"}, 4),
        ({}, {}, None),
        ({INDEX_KEY: "-1"}, {}, None),
    ],
)
def test_pod_index(labels: dict, annotations: dict, expected: int | None) -> None:
    assert pod_index({"metadata": {"labels": labels, "annotations": annotations}}) == expected


def test_pod_results() -> None:
    def ok(
        index: int, message: str | None, created: str = "2024-01-01T00:01:00Z", name: str | None = None
    ) -> dict[str, Any]:
        return _pod(
            index,
            "Succeeded",
            name=name,
            created=created,
            container_statuses=[_terminated("main", 0, "Completed", message)],
        )

    pods = [
        ok(0, '{"rows": 10, "bytes": 2048}\n'),
        ok(1, "not json"),
        ok(2, "[1, 2]"),
        ok(3, None),
        ok(4, '{"attempt": 2}', created="2024-01-01T00:05:00Z", name="late"),
        ok(4, '{"attempt": 1}', created="2024-01-01T00:01:00Z", name="early"),
        ok(5, "  "),
        ok(6, "42"),
        _pod(7, "Failed", container_statuses=[_terminated("main", 1, "Error", '{"rows": 0}')]),
    ]
    assert pod_results(pods) == {0: {"rows": 10, "bytes": 2048}, 4: {"attempt": 2}}
    assert pod_results(pods, index_map=IndexSet.parse("10-14")) == {
        10: {"rows": 10, "bytes": 2048},
        14: {"attempt": 2},
    }


def test_pod_results_container_choice() -> None:
    pod = _pod(
        0,
        "Succeeded",
        container_statuses=[
            _terminated("sidecar", 0, "Completed", '{"side": 1}'),
            _terminated("main", 0, "Completed", '{"main": 1}'),
        ],
    )
    assert pod_results([pod]) == {0: {"side": 1}}
    assert pod_results([pod], container="main") == {0: {"main": 1}}


# --------------------------------------------------------------------------- progress


def _outcome(**changes: Any) -> JobOutcome:
    base = job_outcome(RUNNING)
    return JobOutcome(**{**base.__dict__, **changes})


@pytest.mark.parametrize(
    ("outcome", "pending", "line"),
    [
        (
            _outcome(
                completions=1000,
                completed=IndexSet.parse("0-733"),
                failed=IndexSet.parse("1,5,9"),
                active=12,
                failed_pods=0,
            ),
            2,
            "indexes 734/1000 done, 3 failed, 12 running, 2 pending",
        ),
        (job_outcome(RUNNING), 0, "indexes 5/10 done, 0 failed, 4 running, 1 pod failure"),
        (job_outcome(COMPLETE), 0, "indexes 10/10 done, 0 failed, 0 running; complete"),
        (
            job_outcome(BACKOFF),
            0,
            "indexes 8/10 done, 0 failed, 0 running, 7 pod failures; failed (BackoffLimitExceeded)",
        ),
        (
            _outcome(early_signals=("FailureTarget",), active=0, terminating=3, failed_pods=0),
            0,
            "indexes 5/10 done, 0 failed, 0 running; FailureTarget",
        ),
        (
            _outcome(suspended=True, active=0, failed_pods=0),
            0,
            "indexes 5/10 done, 0 failed, 0 running; suspended",
        ),
        (
            _outcome(indexed=False, completed=IndexSet(), succeeded_pods=3, failed_pods=0),
            0,
            "pods 3/10 succeeded, 4 running",
        ),
        (_outcome(completions=None, failed_pods=0), 0, "indexes 5/? done, 0 failed, 4 running"),
    ],
)
def test_progress_line(outcome: JobOutcome, pending: int, line: str) -> None:
    assert progress_line(outcome, pending=pending) == line


# --------------------------------------------------------------------------- describe_failure


def test_describe_failure_names_indexes_exit_codes_reasons_and_logs() -> None:
    retry = _pod(
        3,
        "Failed",
        name="retry-of-3",
        created="2024-01-01T00:03:00Z",
        container_statuses=[_terminated("main", 137, "OOMKilled")],
    )
    failures = pod_failures([OOM, retry, ERROR, EVICTED])
    logs = {
        "retry-of-3": "loading\n" + "\n".join(f"line {i}" for i in range(50)) + "\nKilled\n",
        ERROR["metadata"]["name"]: "start\nTraceback (most recent call last):\nValueError: bad row 17\n",
    }
    outcome = job_outcome(
        _job(
            [_cond("Failed", reason="FailedIndexes", message="Job has failed indexes")],
            failedIndexes="3,7",
            completedIndexes="0-2,5-6,8-9",
        )
    )
    text = describe_failure(outcome, failures, logs)
    lines = text.splitlines()
    assert lines[0] == "Job failed: FailedIndexes: Job has failed indexes"
    assert "indexes: 7/10 done, failed indexes 3,7" in lines
    assert "4 failed pods on 3 indexes:" in lines
    # one pod per index: the latest attempt of index 3
    assert "- index 3: pod retry-of-3, container main, exit code 137, OOMKilled, 2 failed attempts" in lines
    assert f"- index 7: pod {ERROR['metadata']['name']}, container main, exit code 1, Error" in lines
    assert any(
        line.startswith(f"- index 4: pod {EVICTED['metadata']['name']}")
        and "Evicted" in line
        and "disrupted" in line
        for line in lines
    )
    assert (
        "    | Killed" in lines and "    | line 49" in lines and "    | line 29" not in lines
    )  # last 20 lines
    assert "    | ValueError: bad row 17" in lines
    # the termination message duplicates the log tail: not repeated
    assert not any("message: Traceback" in line for line in lines)
    assert "message: The container could not be located" in text  # no log for that pod: message shown


def test_describe_failure_for_a_failjob_rule() -> None:
    text = describe_failure(
        job_outcome(FAILJOB),
        pod_failures(
            [_pod(3, "Failed", container_statuses=[_terminated("main", 42, "Error", "bad config")])]
        ),
        {},
    )
    assert text.splitlines()[:2] == [
        f"Job failed: PodFailurePolicy: {FAILJOB_MESSAGE}",
        "not retried: a FailJob rule of the pod failure policy matched",
    ]
    assert "exit code 42" in text and "    message: bad config" in text


def test_describe_failure_without_pods() -> None:
    text = describe_failure(
        job_outcome(
            _job(
                [
                    _cond(
                        "Failed",
                        reason="DeadlineExceeded",
                        message="Job was active longer than specified deadline",
                    )
                ]
            )
        ),
        [],
        {},
    )
    assert (
        text
        == "Job failed: DeadlineExceeded: Job was active longer than specified deadline\nindexes: 0/10 done"
    )


def test_describe_failure_is_capped() -> None:
    pods = [
        _pod(i, "Failed", container_statuses=[_terminated("main", 1, "Error", "m" * 3000)]) for i in range(40)
    ]
    logs = {p["metadata"]["name"]: ("y" * 1000 + "\n") * 100 for p in pods}
    text = describe_failure(job_outcome(BACKOFF), pod_failures(pods), logs)
    assert len(text) <= 8000
    short = describe_failure(job_outcome(BACKOFF), pod_failures(pods), {}, max_indexes=5)
    assert "... and 35 more failed indexes" in short
    assert sum(line.startswith("- index") for line in short.splitlines()) == 5
    long_line = describe_failure(job_outcome(BACKOFF), pod_failures(pods[:1]), logs, max_line_chars=50)
    assert "    | " + "y" * 47 + "..." in long_line.splitlines()


def test_describe_failure_shows_the_real_failure_of_an_index_not_a_later_disruption() -> None:
    crashed = _pod(
        5,
        "Failed",
        name="crashed",
        created="2024-01-01T00:01:00Z",
        container_statuses=[_terminated("main", 3, "Error")],
    )
    preempted = copy.deepcopy(PREEMPTED)
    preempted["metadata"]["creationTimestamp"] = "2024-01-01T00:09:00Z"
    later_crash = _pod(
        6,
        "Failed",
        name="later",
        created="2024-01-01T00:09:00Z",
        container_statuses=[_terminated("main", 4, "Error")],
    )
    earlier_crash = _pod(
        6,
        "Failed",
        name="earlier",
        created="2024-01-01T00:02:00Z",
        container_statuses=[_terminated("main", 5, "Error")],
    )
    failures = [
        f for f in reversed(pod_failures([crashed, preempted, later_crash, earlier_crash]))
    ]  # any order
    lines = describe_failure(job_outcome(BACKOFF), failures, {}).splitlines()
    assert "- index 5: pod crashed, container main, exit code 3, Error, 2 failed attempts" in lines
    assert "- index 6: pod later, container main, exit code 4, Error, 2 failed attempts" in lines
