"""Read a Job (and its pods) into an outcome: THE place that decides "finished, and how".

Over 400 lines on purpose: the one place that decides "finished, and how" stays one module.

Pure: takes the camelCase dicts the API server returns, imports neither Airflow nor a Kubernetes
client. Rules (the Job controller's, ``pkg/controller/job``):

- a Job is finished only when a ``Complete`` or ``Failed`` condition has ``status == "True"``
  (the string: ``"False"`` and ``"Unknown"`` do not count);
- ``FailureTarget`` and ``SuccessCriteriaMet`` are early signals: the controller is about to
  finish the Job (terminating the remaining pods first), but it is not finished yet;
- a Job failed by a ``FailJob`` rule of its pod failure policy (condition reason
  ``PodFailurePolicy``; message "Container <c> for pod <ns>/<pod> failed with exit code <n>
  matching FailJob rule at index <i>" or "Pod <ns>/<pod> has condition <type> matching FailJob
  rule at index <i>") is not retryable: Airflow must not run it again.

Indexes in :class:`JobOutcome` and, unless an ``index_map`` is passed, in :class:`IndexFailure`
and :func:`pod_results` are Job-local; map them with
:func:`airflow_provider_kbatch.spec.intervals.map_local` (logical = ``index_map.nth(local)``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JOB_COMPLETION_INDEX_KEY
from airflow_provider_kbatch.spec.times import time_or_none

COMPLETE = "Complete"
FAILED = "Failed"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"
SUSPENDED = "Suspended"
DISRUPTION_TARGET = "DisruptionTarget"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"

MAX_MESSAGE_CHARS = 1000
MAX_DESCRIPTION_CHARS = 8000


@dataclass(frozen=True)
class IndexFailure:
    """One failed pod."""

    index: int | None  # Job-local completion index (logical with index_map); None for NonIndexed
    pod: str
    container: str | None
    exit_code: int | None
    reason: str | None  # "OOMKilled", "Error", "DeadlineExceeded", "Evicted", ...
    message: str | None  # termination message or pod status message (truncated, tail kept)
    disruption: bool  # pod had DisruptionTarget=True: evicted, preempted, drained
    created: str | None = None  # pod creationTimestamp (RFC 3339)


@dataclass(frozen=True)
class JobOutcome:
    """What a Job's status says, read once, the same way everywhere."""

    finished: bool  # Complete or Failed condition with status == "True"
    succeeded: bool  # finished and Complete
    reason: str | None  # reason of Failed / Complete (else of FailureTarget / SuccessCriteriaMet)
    message: str | None
    retryable: bool  # False when a FailJob rule of the pod failure policy failed the Job
    suspended: bool  # Suspended condition True or spec.suspend
    early_signals: tuple[str, ...]  # "FailureTarget", "SuccessCriteriaMet" when True
    completions: int | None
    completed: IndexSet  # Job-local (status.completedIndexes)
    failed: IndexSet  # Job-local (status.failedIndexes, with backoffLimitPerIndex)
    active: int
    ready: int
    terminating: int
    succeeded_pods: int
    failed_pods: int
    indexed: bool = True  # spec.completionMode == "Indexed"
    start_time: str | None = None
    completion_time: str | None = None


# --------------------------------------------------------------------------- helpers


def _true_conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Conditions whose status is the string "True", by type (the last one wins)."""
    out: dict[str, Mapping[str, Any]] = {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("status") == "True" and isinstance(cond.get("type"), str):
            out[cond["type"]] = cond
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _indexes(text: Any) -> IndexSet:
    if not isinstance(text, str):
        return IndexSet()
    try:
        return IndexSet.parse(text)
    except ValueError:  # not something the API server writes; do not crash a wait on it
        return IndexSet()


def _tail(text: Any, limit: int = MAX_MESSAGE_CHARS) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    stripped: str = text.strip()
    return stripped if len(stripped) <= limit else "..." + stripped[-(limit - 3) :]


def is_fail_job(condition: Mapping[str, Any] | None) -> bool:
    """The condition says a FailJob rule of the pod failure policy matched."""
    if not condition or condition.get("reason") != REASON_POD_FAILURE_POLICY:
        return False
    message = condition.get("message") or ""
    # every PodFailurePolicy reason comes from a FailJob rule (FailIndex gives FailedIndexes);
    # the message, when present, says so explicitly
    return not message or "FailJob" in message


# --------------------------------------------------------------------------- the Job


def job_outcome(job: Mapping[str, Any]) -> JobOutcome:
    """Decide whether ``job`` is finished, and how. THE function for it: everything uses this."""
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    conds = _true_conditions(job)
    complete, failed = conds.get(COMPLETE), conds.get(FAILED)
    early = tuple(t for t in (FAILURE_TARGET, SUCCESS_CRITERIA_MET) if t in conds)
    decisive = failed or complete or conds.get(FAILURE_TARGET) or conds.get(SUCCESS_CRITERIA_MET)
    completions = spec.get("completions")
    return JobOutcome(
        finished=bool(complete or failed),
        succeeded=bool(complete) and not failed,
        reason=decisive.get("reason") if decisive else None,
        message=decisive.get("message") if decisive else None,
        retryable=not (is_fail_job(failed) or (not complete and is_fail_job(conds.get(FAILURE_TARGET)))),
        suspended=SUSPENDED in conds or spec.get("suspend") is True,
        early_signals=early,
        completions=completions if isinstance(completions, int) else None,
        completed=_indexes(status.get("completedIndexes")),
        failed=_indexes(status.get("failedIndexes")),
        active=_int(status.get("active")),
        ready=_int(status.get("ready")),
        terminating=_int(status.get("terminating")),
        succeeded_pods=_int(status.get("succeeded")),
        failed_pods=_int(status.get("failed")),
        indexed=spec.get("completionMode") == "Indexed",
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
    )


# --------------------------------------------------------------------------- pods


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The Job-local completion index of a pod (label since 1.28, annotation before)."""
    meta = pod.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = source.get(JOB_COMPLETION_INDEX_KEY)
        if isinstance(value, str) and value.isdigit() and value.isascii():
            return int(value)
    return None


def logical_index(pod: Mapping[str, Any], index_map: IndexSet | None = None) -> int | None:
    """The logical index a pod runs: its completion index through the Job's index map (the one
    definition; a resumed Job's local index k runs logical index ``index_map.nth(k)``)."""
    local = pod_index(pod)
    return None if local is None else to_logical(local, index_map)


def to_logical(index: int, index_map: IndexSet | None) -> int:
    """Job-local -> logical index (unchanged without a map, or outside it)."""
    if index_map is None or index >= len(index_map):
        return index
    return index_map.nth(index)


def creation_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    """Sorts pods by creation (name breaks ties): of an index's pods, the greatest is the last
    created, whose result wins."""
    meta = pod.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _by_creation(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((p for p in pods if isinstance(p, Mapping)), key=creation_order)


def _terminated_statuses(pod: Mapping[str, Any]) -> list[tuple[str | None, Mapping[str, Any]]]:
    """``(container, terminated state)`` pairs: app containers first, then init containers."""
    status = pod.get("status") or {}
    found = []
    for kind in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(kind) or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if isinstance(term, Mapping):
                found.append((cs.get("name"), term))
    return found


def _failed_container(pod: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    terminated = _terminated_statuses(pod)
    for name, term in terminated:
        if term.get("exitCode") not in (0, None):
            return name, term
    return terminated[0] if terminated else (None, {})


def _failure(pod: Mapping[str, Any], index_map: IndexSet | None) -> IndexFailure:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    disruption = _true_conditions(pod).get(DISRUPTION_TARGET)
    container, term = _failed_container(pod)
    local = pod_index(pod)
    exit_code = term.get("exitCode")
    return IndexFailure(
        index=None if local is None else to_logical(local, index_map),
        pod=str(meta.get("name") or ""),
        container=container,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        # the pod-level reason (Evicted, DeadlineExceeded, ...) says more than the container's
        reason=status.get("reason") or term.get("reason") or (disruption or {}).get("reason"),
        message=_tail(term.get("message"))
        or _tail(status.get("message"))
        or _tail((disruption or {}).get("message")),
        disruption=disruption is not None,
        created=meta.get("creationTimestamp"),
    )


def pod_failures(
    pods: Iterable[Mapping[str, Any]], *, index_map: IndexSet | None = None
) -> list[IndexFailure]:
    """One :class:`IndexFailure` per failed pod (phase ``Failed``), by index then creation time.

    With ``index_map`` (the Job's ``kbatch.io/index-map``), indexes are logical.
    """
    failures = [
        _failure(p, index_map) for p in _by_creation(pods) if (p.get("status") or {}).get("phase") == "Failed"
    ]
    return sorted(failures, key=lambda f: -1 if f.index is None else f.index)


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def pod_results(
    pods: Iterable[Mapping[str, Any]],
    *,
    index_map: IndexSet | None = None,
    container: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Index -> the JSON object a Succeeded pod wrote as its termination message.

    Messages that are not a JSON object are ignored. When several pods of an index succeeded,
    the last created wins. ``container`` restricts to one container (default: the first with
    a JSON object). Indexes are Job-local, or logical with ``index_map``.
    """
    results: dict[int, dict[str, Any]] = {}
    for pod in _by_creation(pods):
        index = pod_index(pod)
        if index is None or (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        for name, term in _terminated_statuses(pod):
            value = _json_object(term.get("message")) if container in (None, name) else None
            if value is not None:
                results[to_logical(index, index_map)] = value
                break
    return results


# --------------------------------------------------------------------------- reporting


def progress_line(outcome: JobOutcome, pending: int = 0) -> str:
    """``"indexes 734/1000 done, 3 failed, 12 running, 2 pending"`` (+ pod failures, state)."""
    total = "?" if outcome.completions is None else str(outcome.completions)
    if outcome.indexed:
        parts = [f"indexes {len(outcome.completed)}/{total} done", f"{len(outcome.failed)} failed"]
    else:
        parts = [f"pods {outcome.succeeded_pods}/{total} succeeded"]
    parts.append(f"{outcome.active} running")
    if pending:
        parts.append(f"{pending} pending")
    if outcome.failed_pods:
        parts.append(f"{outcome.failed_pods} pod failure{'s' if outcome.failed_pods != 1 else ''}")
    line = ", ".join(parts)
    if outcome.finished:
        state = (
            "complete" if outcome.succeeded else f"failed ({outcome.reason})" if outcome.reason else "failed"
        )
        return f"{line}; {state}"
    notes = [*outcome.early_signals, *(["suspended"] if outcome.suspended else [])]
    return f"{line}; {', '.join(notes)}" if notes else line


def _one_line(text: str, limit: int) -> str:
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_pod(failure: IndexFailure, attempts: int) -> str:
    where = "pod" if failure.index is None else f"index {failure.index}: pod"
    bits = [f"{where} {failure.pod}"]
    if failure.container:
        bits.append(f"container {failure.container}")
    if failure.exit_code is not None:
        bits.append(f"exit code {failure.exit_code}")
    if failure.reason:
        bits.append(failure.reason)
    if failure.disruption:
        bits.append("disrupted (eviction/preemption; not counted against retries)")
    if attempts > 1:
        bits.append(f"{attempts} failed attempts")
    return "- " + ", ".join(bits)


def _log_lines(log: str, max_lines: int, max_chars: int) -> list[str]:
    lines = log.rstrip("\n").splitlines()[-max_lines:]
    return [f"    | {line if len(line) <= max_chars else line[: max_chars - 3] + '...'}" for line in lines]


def _representatives(failures: list[IndexFailure]) -> list[tuple[IndexFailure, int]]:
    """The latest failure of each index (a real failure before a disruption) and the count."""
    groups: dict[int | None, list[IndexFailure]] = {}
    for failure in failures:
        groups.setdefault(failure.index, []).append(failure)
    chosen = []
    for group in groups.values():
        ordered = sorted(group, key=lambda f: (not f.disruption, f.created or ""))
        chosen.append((ordered[-1], len(group)))
    return chosen


def _header(outcome: JobOutcome) -> list[str]:
    state = (
        "failed"
        if outcome.finished and not outcome.succeeded
        else "is failing"
        if not outcome.finished
        else "finished"
    )
    head = f"Job {state}"
    if outcome.reason:
        head += f": {outcome.reason}"
    if outcome.message:
        head += f": {_one_line(outcome.message, 500)}"
    lines = [head]
    if not outcome.retryable:
        lines.append("not retried: a FailJob rule of the pod failure policy matched")
    if outcome.indexed and outcome.completions is not None:
        line = f"indexes: {len(outcome.completed)}/{outcome.completions} done"
        if outcome.failed:
            line += f", failed indexes {_one_line(str(outcome.failed), 300)}"
        lines.append(line)
    return lines


def describe_failure(
    outcome: JobOutcome,
    failures: list[IndexFailure],
    logs_by_pod: Mapping[str, str],
    *,
    max_indexes: int = 10,
    max_log_lines: int = 20,
    max_line_chars: int = 300,
) -> str:
    """A readable, size-capped, multi-line failure message for the task log and exception.

    Names the failed indexes, exit codes, reasons (OOMKilled, Evicted, ...), the termination
    message and the last log lines of one failed pod per index (from ``logs_by_pod``).
    """
    lines = _header(outcome)
    chosen = _representatives(failures)
    if chosen:
        indexes = {f.index for f in failures}
        lines.append(
            f"{len(failures)} failed pod{'s' if len(failures) != 1 else ''} on {len(indexes)} index{'es' if len(indexes) != 1 else ''}:"
        )
    for failure, attempts in chosen[:max_indexes]:
        lines.append(_describe_pod(failure, attempts))
        log = logs_by_pod.get(failure.pod)
        if failure.message and not (log and failure.message.strip() in log):
            lines.append(f"    message: {_one_line(failure.message, 500)}")
        if log and log.strip():
            lines.append(f"    last log lines of {failure.pod}:")
            lines.extend(_log_lines(log, max_log_lines, max_line_chars))
    if len(chosen) > max_indexes:
        lines.append(f"... and {len(chosen) - max_indexes} more failed indexes")
    text = "\n".join(lines)
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[: MAX_DESCRIPTION_CHARS - 16] + "\n... (truncated)"
    return text


def job_end_time(status: Mapping[str, Any]) -> datetime.datetime | None:
    """When a Job ended: its ``completionTime`` (set on success), else the transition time of its
    terminal ``Complete`` / ``Failed`` condition (a failed Job has no ``completionTime``)."""
    end = time_or_none(status.get("completionTime"))
    if end is not None:
        return end
    for cond in status.get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return time_or_none(cond.get("lastTransitionTime"))
    return None


# what of a pod's metadata anything after the list reads (status is kept whole): of a watched
# Succeeded pod, the first six and two labels (watched_pod)
_WATCHED_SUCCEEDED_METADATA = (
    "name",
    "namespace",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
)
_POD_METADATA = (*_WATCHED_SUCCEEDED_METADATA, "labels", "annotations", "ownerReferences")
_WATCHED_LABELS = (CONTROLLER_UID_LABEL, JOB_COMPLETION_INDEX_KEY)


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """``pod`` without what no kbatch reader looks at (managed fields, env, volumes, commands):
    metadata names, version, times, labels, annotations and owners; the containers' names and
    images; the node; the whole status. A full pod is 5-10 KB of JSON; what the watches, the
    waits and the outcome keep of a Job's pods at 100,000 indexes is this."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    slim_spec: dict[str, Any] = {
        "containers": [
            {"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or () if c
        ],
    }
    for key in ("nodeName", "restartPolicy"):
        if key in spec:
            slim_spec[key] = spec[key]
    return {
        "metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
        "spec": slim_spec,
        "status": dict(pod.get("status") or {}),
    }


def watched_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What a pod watch keeps (and reports) of a pod: :func:`slim_pod` of a pod not Succeeded;
    of a Succeeded one, the bulk (every completed index until the pod garbage collector deletes
    it: 12,500 by default), only its names, version, times, index and controller uid, containers
    and the terminated state of each (its result): about a third of the slim pod."""
    slim = slim_pod(pod)
    status = slim["status"]
    if status.get("phase") != "Succeeded":
        return slim
    meta = slim["metadata"]
    kept: dict[str, Any] = {k: meta[k] for k in _WATCHED_SUCCEEDED_METADATA if k in meta}
    for part in ("labels", "annotations"):
        picked = {k: v for k, v in (meta.get(part) or {}).items() if k in _WATCHED_LABELS}
        if picked:
            kept[part] = picked
    ended: dict[str, Any] = {"phase": "Succeeded"}
    for name, term in _terminated_statuses(slim):
        ended.setdefault("containerStatuses", []).append(
            {"name": name, "state": {"terminated": {k: v for k, v in term.items() if k != "containerID"}}}
        )
    return {"metadata": kept, "spec": slim["spec"], "status": ended}
