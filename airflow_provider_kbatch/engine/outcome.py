"""Turning a finished Job into the task's result (XCom) or a readable failure.

Reads the Job and its pods through the hook, decides with :mod:`airflow_provider_kbatch.status`,
records the attempt in the run ledger, and gathers per-index results (termination messages) of
this attempt and of earlier attempts of the same spec (kept in results ConfigMaps,
:mod:`airflow_provider_kbatch.engine.results`, so a resumed attempt still returns every index's
result).

The result (XCom)::

    {"name", "namespace", "uid", "completions", "completed_indexes", "failed_indexes",
     "results": {"<index>": {...}},   the lowest indexes, in order, within 48 KiB
     "results_inline": n, "results_total": m,
     "results_ref": {namespace, dag_id, run_id, task_id, map_index} | null,
                                      read_results(hook, **results_ref) returns all m
     "output": {...} | null, "summary": "8/8 indexes completed, 0 failed"}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_kbatch.engine import ledger, podpages
from airflow_provider_kbatch.engine import results as stored_results
from airflow_provider_kbatch.engine.submission import job_generation, job_index_map
from airflow_provider_kbatch.engine.waiter import Log
from airflow_provider_kbatch.pipeline.results import results_ref, xcom_fields
from airflow_provider_kbatch.pipeline.summary import split_output_summary
from airflow_provider_kbatch.spec.intervals import IndexSet, map_local
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JobIdentity
from airflow_provider_kbatch.status import (
    creation_order,
    describe_failure,
    job_end_time,
    job_outcome,
    pod_failures,
    pod_index,
    pod_results,
    slim_pod,
    to_logical,
)

LOG_TAIL_LINES = 20
MAX_INDEXES_WITH_LOGS = 5
MAX_LOGS = 12


@dataclass(frozen=True)
class StageFailure:
    message: str
    retryable: bool


def _failure_logs(hook: Any, namespace: str, failures: list[Any], log: Log) -> dict[str, str]:
    """Last log lines of the failed pods of the first few failed indexes (describe_failure picks
    one pod per index to show)."""
    indexes: list[Any] = []
    logs: dict[str, str] = {}
    for failure in failures:
        if failure.disruption:
            continue
        if failure.index not in indexes:
            if len(indexes) >= MAX_INDEXES_WITH_LOGS:
                continue
            indexes.append(failure.index)
        if len(logs) >= MAX_LOGS:
            break
        try:
            logs[failure.pod] = hook.read_pod_log(
                namespace, failure.pod, failure.container, tail_lines=LOG_TAIL_LINES
            )
        except Exception as err:  # the pod may be gone already; the message still names exit codes
            log.debug("no log for pod %s: %s", failure.pod, err)
    return logs


def _gather_pods(
    hook: Any, namespace: str, uid: str, index_map: IndexSet
) -> tuple[dict[int, dict[str, Any]], Any, list[dict[str, Any]], IndexSet]:
    """Read the attempt's pods a page at a time (:mod:`~airflow_provider_kbatch.engine.podpages`):
    per logical index the result of its last created Succeeded pod, the output summary if one pod
    sent it, the failed pods (slimmed) for the failure message, and the Job-local indexes that
    still have a Succeeded pod. No list of every pod is held."""
    results: dict[int, dict[str, Any]] = {}
    present: set[int] = set()
    created: dict[int, tuple[str, str]] = {}
    summary = None
    failed: list[dict[str, Any]] = []
    for page in podpages.pages(hook, namespace, f"{CONTROLLER_UID_LABEL}={uid}"):
        for pod in page:
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Failed":
                failed.append(slim_pod(pod))
                continue
            if phase != "Succeeded":
                continue
            local_index = pod_index(pod)
            if local_index is not None:
                present.add(local_index)
            order = creation_order(pod)
            for local, value in pod_results([pod]).items():
                if local in created and created[local] > order:
                    continue  # an index's last created pod wins, as pod_results decides
                created[local] = order
                user, found = split_output_summary(value)
                summary = summary or found
                results[to_logical(local, index_map)] = user
    return results, summary, failed, IndexSet.of(present)


def job_times(job: dict[str, Any]) -> dict[str, str | None]:
    """The Job's own timestamps for its ledger attempt: created, started (``status.startTime``:
    unsuspended and admitted), ended (:func:`~airflow_provider_kbatch.status.job_end_time`)."""
    status = job.get("status") or {}
    ended = job_end_time(status)
    return {
        "created": (job.get("metadata") or {}).get("creationTimestamp"),
        "started": status.get("startTime"),
        "ended": None if ended is None else ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def finish_stage(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    job: dict[str, Any] | None,
    *,
    completions: int,
    log: Log,
    output_name: str | None = None,
) -> tuple[dict[str, Any], StageFailure | None]:
    """Result for XCom and, when the Job failed, the failure to raise."""
    if job is None:  # nothing ran in this try: everything completed in earlier attempts
        record = ledger.read_stage(hook, namespace, identity)
        completed = record.completed if record else IndexSet.full(completions)
        every = stored_results.gather(hook, namespace, identity, record)
        return _result(
            None, namespace, identity, completions, completed, IndexSet.of([]), record, every
        ), None
    outcome = job_outcome(job)
    meta = job["metadata"]
    index_map = job_index_map(job)
    completed = map_local(outcome.completed, index_map)
    failed = map_local(outcome.failed, index_map)
    if outcome.succeeded and not outcome.indexed:
        completed = index_map  # NonIndexed Job: no completedIndexes; Complete means every index ran
    results, summary, failed_pods, present = _gather_pods(hook, namespace, meta["uid"], index_map)
    # indexes this attempt completed whose pod is gone: the wait stored the results of the pods it
    # saw deleted (engine.results.rescue); what it did not see is lost
    gone = map_local(outcome.completed - present, index_map) if outcome.indexed else IndexSet.of([])
    listed = None  # the stored attempts, listed once for both reads below
    if gone:
        listed = stored_results.stored_for(hook, namespace, identity)
        mine = stored_results.of_attempt(hook, namespace, identity, job, listed)
        rescued = {
            i: dict(v) for i, v in (mine.results if mine else {}).items() if i in gone and i not in results
        }
        results.update(rescued)
        gone = IndexSet.of(i for i in gone if i not in rescued)
        if rescued:
            log.info(
                "job %s/%s: the results of %d indexes whose pods were deleted before the Job finished "
                "were kept by the wait", namespace, meta["name"], len(rescued),
            )  # fmt: skip
    if gone:
        log.warning(
            "job %s/%s: %d completed indexes have no pod left to read a result from (%s): they were "
            "deleted before the Job finished, most likely by the pod garbage collector "
            "(kube-controller-manager --terminated-pod-gc-threshold, 12,500 terminated pods by "
            "default), and the wait did not see them go (it was not running); their results are "
            "missing from the XCom and the results ConfigMaps",
            namespace, meta["name"], len(gone), gone,
        )  # fmt: skip
    output = None
    if summary is not None and output_name:
        output = {
            "name": output_name,
            "manifest_digest": summary.manifest_digest,
            "bytes": summary.bytes,
            "records": summary.records,
            "contract": summary.contract,
        }
    record = ledger.attempt_finished(
        hook,
        namespace,
        identity,
        job=meta["name"],
        uid=meta["uid"],
        succeeded=outcome.succeeded,
        completed=completed,
        failed=failed,
        reason=outcome.reason,
        results=results,
        output=output,
        job_times=job_times(job),
    )
    every = stored_results.gather(
        hook, namespace, identity, record, job=job, results=results, generation=job_generation(job),
        listed=listed,
    )  # fmt: skip
    done = record.completed if record else completed
    result = _result(job, namespace, identity, completions, done, failed, record, every)
    if gone:
        result["results_unreadable"] = str(gone)
    if outcome.succeeded:
        log.info("job %s/%s complete: %s", namespace, meta["name"], result["summary"])
        return result, None
    failures = [
        replace(f, index=index_map.nth(f.index)) if f.index is not None and f.index < len(index_map) else f
        for f in pod_failures(failed_pods)
    ]
    message = describe_failure(outcome, failures, _failure_logs(hook, namespace, failures, log))
    header = f"job {namespace}/{meta['name']} failed"
    if not outcome.retryable:
        header += " (a FailJob rule matched: not retried by Airflow)"
    return result, StageFailure(f"{header}\n{message}", outcome.retryable)


def _result(
    job: dict[str, Any] | None,
    namespace: str,
    identity: JobIdentity,
    completions: int,
    completed: IndexSet,
    failed: IndexSet,
    record: Any,
    results: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    meta = (job or {}).get("metadata", {})
    ref = results_ref(namespace, identity.dag_id, identity.run_id, identity.task_id, identity.map_index)
    return {
        "name": meta.get("name"),
        "namespace": namespace,
        "uid": meta.get("uid"),
        "completions": completions,
        "completed_indexes": str(completed),
        "failed_indexes": str(failed),
        **xcom_fields(results, ref),
        "output": _output_of(record),
        "summary": f"{len(completed)}/{completions} indexes completed, {len(failed)} failed",
    }


def _output_of(record: Any) -> dict[str, Any] | None:
    output = getattr(record, "output", None)
    if output is None:
        return None
    return {
        "name": output.name,
        "manifest_digest": output.manifest_digest,
        "bytes": output.bytes,
        "records": output.records,
        "contract": dict(output.contract) if output.contract else None,
    }
