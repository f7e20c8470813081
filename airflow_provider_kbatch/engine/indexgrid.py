"""A stage's index grid (pure): Job + pods + ledger record -> one state per logical index.

What the UI plugin's per-index view shows, computed from what the cluster and the run ledger say,
and from the ledger alone when the Job and its pods are gone (garbage-collected by TTL). Imports
neither Airflow nor a Kubernetes client; the camelCase dicts the API server returns go in.

States of a logical index (the first rule that applies wins):

- ``succeeded``: completed, per the Job's ``completedIndexes`` or the ledger (any Airflow try:
  a resumed try does not run it again, ``try`` says which try did);
- ``failed``: in the Job's ``failedIndexes`` (``backoffLimitPerIndex`` exhausted), or in the
  ledger's failed indexes once the stage failed;
- ``running``: a pod of the index is ``Running``;
- ``pending``: a pod of the index is ``Pending`` (``Unschedulable`` when the scheduler said so);
- ``backoff``: the Job is still running, the index has failed pods and no live one: the Job
  controller waits out its exponential backoff before the next pod;
- ``skipped``: the stage ended successfully without running it (a success policy, or
  ``min_success_ratio``, let the Job succeed first);
- ``not_run``: the stage ended (failed) before the index ran;
- ``waiting``: nothing ran the index yet (the Job is running, suspended or not created yet).

Indexes are logical: a resumed try's Job-local index ``k`` runs ``index_map.nth(k)``.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.ledger_schema import Attempt, StageRecord
from airflow_provider_kbatch.spec.intervals import IndexSet, map_local
from airflow_provider_kbatch.spec.names import ANNOTATION_INDEX_MAP, CONTROLLER_UID_LABEL
from airflow_provider_kbatch.spec.times import time_or_none
from airflow_provider_kbatch.status import (
    DISRUPTION_TARGET,
    JobOutcome,
    job_outcome,
    pod_index,
)

IndexState = Literal["succeeded", "failed", "running", "pending", "backoff", "skipped", "not_run", "waiting"]
STATES: tuple[IndexState, ...] = (
    "succeeded",
    "failed",
    "running",
    "pending",
    "backoff",
    "skipped",
    "not_run",
    "waiting",
)
#: One character per state: the grid's ``states`` string has one per index (10,000 indexes: 10 kB).
CODES: dict[IndexState, str] = {
    "succeeded": "S",
    "failed": "F",
    "running": "R",
    "pending": "P",
    "backoff": "B",
    "skipped": "K",
    "not_run": "N",
    "waiting": "W",
}
#: Collapsed ranges sent at most (the page collapses ``states`` itself; this is for API readers).
MAX_RANGES = 2000
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"


@dataclass(frozen=True)
class PodAttempt:
    """One pod of one index: what ran, how it ended, and for how long."""

    index: int  # logical
    pod: str
    phase: str
    try_number: int | None  # the Airflow try whose Job created the pod (None: unknown Job)
    job_uid: str | None
    exit_code: int | None
    reason: str | None  # OOMKilled, Evicted, DeadlineExceeded, Unschedulable, Error, ...
    message: str | None
    created: str | None
    started: str | None
    finished: str | None
    duration: float | None  # seconds: container start to end (or to now while running)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "phase": self.phase,
            "try": self.try_number,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "duration": self.duration,
        }


@dataclass(frozen=True)
class IndexGrid:
    """Every logical index of a stage: its state, its attempts (pods), which try ran it."""

    completions: int
    states: tuple[IndexState, ...]
    attempts: Mapping[int, tuple[PodAttempt, ...]]  # logical index -> pods, oldest first
    ran_in_try: Mapping[int, int]  # succeeded index -> the Airflow try that completed it
    job_exists: bool
    pods_listed: bool  # False: no pod information (the Job is gone, or it was not read)
    job_reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    def state(self, index: int) -> IndexState:
        return self.states[index]

    def reason(self, index: int) -> str | None:
        """The latest failed (or pending) attempt's reason, for an index not succeeded."""
        if self.states[index] == "succeeded":
            return None
        for attempt in reversed(self.attempts.get(index, ())):
            if attempt.reason and attempt.phase in ("Failed", "Pending"):
                return attempt.reason
        if self.states[index] in ("failed", "not_run") and self.job_reason:
            return self.job_reason
        return None

    def counts(self) -> dict[str, int]:
        counted = Counter(self.states)
        return {state: counted.get(state, 0) for state in STATES}

    def reasons(self) -> dict[str, int]:
        """Failed pod attempts by reason (every attempt, retried ones too)."""
        counted: Counter[str] = Counter()
        for pods in self.attempts.values():
            for attempt in pods:
                if attempt.phase == "Failed" or attempt.reason == "Unschedulable":
                    counted[attempt.reason or "Error"] += 1
        return dict(counted.most_common())

    def ranges(self) -> list[tuple[int, int, IndexState]]:
        return collapse(self.states)

    def to_dict(self) -> dict[str, Any]:
        """The grid as JSON, columnar so 10,000 indexes stay small (~150 kB)."""
        n = self.completions
        attempts = [len(self.attempts.get(i, ())) for i in range(n)]
        reasons = [self.reason(i) for i in range(n)]
        durations = [_last_duration(self.attempts.get(i, ())) for i in range(n)]
        tries = [self.ran_in_try.get(i) or _last_try(self.attempts.get(i, ())) for i in range(n)]
        ranges = self.ranges()
        by_state = {s: str(IndexSet.of(i for i, x in enumerate(self.states) if x == s)) for s in STATES}
        return {
            "completions": n,
            "codes": dict(CODES),
            "states": "".join(CODES[s] for s in self.states),
            "counts": self.counts(),
            "reasons": self.reasons(),
            "indexes_by_state": {s: v for s, v in by_state.items() if v},
            "ranges": [[a, b, s] for a, b, s in ranges[:MAX_RANGES]],
            "ranges_truncated": len(ranges) > MAX_RANGES,
            "attempts": attempts,
            "reason": reasons,
            "duration": durations,
            "try": tries,
            "job_exists": self.job_exists,
            "pods_listed": self.pods_listed,
            "job_reason": self.job_reason,
            "notes": list(self.notes),
        }

    def index_detail(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "state": self.states[index],
            "reason": self.reason(index),
            "try": self.ran_in_try.get(index),
            "attempts": [a.to_dict() for a in self.attempts.get(index, ())],
        }


def _last_duration(pods: Sequence[PodAttempt]) -> float | None:
    return pods[-1].duration if pods else None


def _last_try(pods: Sequence[PodAttempt]) -> int | None:
    return pods[-1].try_number if pods else None


def collapse(states: Sequence[str]) -> list[tuple[int, int, Any]]:
    """Runs of equal states as ``(first, last, state)``, inclusive: ``SSSFS`` -> 3 ranges."""
    out: list[tuple[int, int, Any]] = []
    for i, state in enumerate(states):
        if out and out[-1][2] == state and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i, state)
        else:
            out.append((i, i, state))
    return out


# --------------------------------------------------------------------------- pods


def _seconds(start: Any, end: Any, now: datetime.datetime) -> float | None:
    began = time_or_none(start)
    if began is None:
        return None
    ended = time_or_none(end) or now
    return round(max(0.0, (ended - began).total_seconds()), 3)


def _main_state(pod: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(terminated, running)`` states of the pod's failing (else first) app container."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    chosen: Mapping[str, Any] = {}
    for cs in statuses:
        state = cs.get("state") or {}
        term = state.get("terminated") or {}
        if term.get("exitCode") not in (0, None):
            return term, {}
        if not chosen:
            chosen = state
    return chosen.get("terminated") or {}, chosen.get("running") or {}


def _pod_reason(pod: Mapping[str, Any], term: Mapping[str, Any], phase: str) -> str | None:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    disruption = conditions.get(DISRUPTION_TARGET) or {}
    if phase == "Pending":
        scheduled = conditions.get("PodScheduled") or {}
        if scheduled.get("status") == "False" and scheduled.get("reason"):
            return str(scheduled["reason"])  # Unschedulable
        return None
    if phase != "Failed":
        return None
    if disruption.get("status") == "True" and not status.get("reason"):
        return (
            "Evicted"
            if disruption.get("reason") in ("EvictionByEvictionAPI", "TerminationByKubelet")
            else str(disruption.get("reason") or "Evicted")
        )
    reason = status.get("reason") or term.get("reason")
    return str(reason) if reason else None


def pod_attempt(
    pod: Mapping[str, Any],
    *,
    attempts_by_uid: Mapping[str, Attempt],
    index_maps: Mapping[str, IndexSet | None],
    now: datetime.datetime,
) -> PodAttempt | None:
    """One pod as an attempt of its logical index (None: not a pod of an Indexed Job)."""
    local = pod_index(pod)
    if local is None:
        return None
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = meta.get("labels") or {}
    uid = labels.get(CONTROLLER_UID_LABEL) or labels.get(LEGACY_CONTROLLER_UID_LABEL)
    index_map = index_maps.get(uid) if uid else None
    logical = index_map.nth(local) if index_map is not None and local < len(index_map) else local
    attempt = attempts_by_uid.get(uid) if uid else None
    phase = str(status.get("phase") or "Pending")
    term, running = _main_state(pod)
    started = term.get("startedAt") or running.get("startedAt") or status.get("startTime")
    finished = term.get("finishedAt")
    exit_code = term.get("exitCode")
    message = term.get("message") or status.get("message")
    return PodAttempt(
        index=logical,
        pod=str(meta.get("name") or ""),
        phase=phase,
        try_number=attempt.try_number if attempt else None,
        job_uid=uid,
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        reason=_pod_reason(pod, term, phase),
        message=str(message)[-500:] if message else None,
        created=meta.get("creationTimestamp"),
        started=started,
        finished=finished,
        duration=_seconds(started, finished, now) if phase in ("Running", "Succeeded", "Failed") else None,
    )


# --------------------------------------------------------------------------- the grid


def _index_map_of(job: Mapping[str, Any] | None) -> IndexSet | None:
    text = ((job or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION_INDEX_MAP)
    if not isinstance(text, str):
        return None
    try:
        return IndexSet.parse(text)
    except ValueError:
        return None


def _completed_by_try(record: StageRecord | None) -> dict[int, int]:
    ran: dict[int, int] = {}
    for attempt in record.attempts if record else ():
        for index in attempt.completed or ():
            ran.setdefault(index, attempt.try_number)
    return ran


def _pods_by_index(
    pods: Iterable[Mapping[str, Any]] | None,
    completions: int,
    attempts_by_uid: Mapping[str, Attempt],
    index_maps: Mapping[str, IndexSet | None],
    now: datetime.datetime,
) -> dict[int, list[PodAttempt]]:
    by_index: dict[int, list[PodAttempt]] = {}
    for pod in pods or ():
        attempt = pod_attempt(pod, attempts_by_uid=attempts_by_uid, index_maps=index_maps, now=now)
        if attempt is not None and 0 <= attempt.index < completions:
            by_index.setdefault(attempt.index, []).append(attempt)
    for group in by_index.values():
        group.sort(key=lambda a: (a.created or "", a.pod))
    return by_index


@dataclass(frozen=True)
class _Ends:
    running_job: bool  # the Job exists and is not finished
    ended: bool  # the stage is over (the Job finished, or the ledger says so when it is gone)
    ended_ok: bool  # ... successfully (or SuccessCriteriaMet): the rest was not needed


def _ends(outcome: JobOutcome | None, record: StageRecord | None) -> _Ends:
    if outcome is not None:
        ok = outcome.succeeded or "SuccessCriteriaMet" in outcome.early_signals
        return _Ends(running_job=not outcome.finished, ended=outcome.finished, ended_ok=ok)
    final = record is not None and record.state in ("succeeded", "failed")
    return _Ends(running_job=False, ended=final, ended_ok=record is not None and record.state == "succeeded")


def _state(i: int, group: Sequence[PodAttempt], done: IndexSet, failed: IndexSet, ends: _Ends) -> IndexState:
    phases = {a.phase for a in group}
    if i in done:
        return "succeeded"
    if i in failed:
        return "failed"
    if "Running" in phases:
        return "running"
    if "Pending" in phases and not ends.ended:
        return "pending"
    if ends.running_job and group:
        return "backoff"
    if ends.ended:
        return "skipped" if ends.ended_ok else "not_run"
    return "waiting"


def _job_reason(outcome: JobOutcome | None, record: StageRecord | None) -> str | None:
    if outcome is not None and outcome.finished and not outcome.succeeded:
        return outcome.reason
    if outcome is None and record is not None and record.state == "failed" and record.latest_attempt:
        return record.latest_attempt.reason
    return None


def build_grid(
    completions: int,
    *,
    record: StageRecord | None,
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]] | None,
    now: datetime.datetime,
) -> IndexGrid:
    """The grid of one stage (rules in the module docstring).

    ``job`` is the stage's latest Job (None when it is gone), ``pods`` every pod of the stage's
    Jobs (all generations; None when they were not read), ``record`` its ledger stage record.
    """
    attempts_by_uid = {a.uid: a for a in (record.attempts if record else ()) if a.uid}
    index_maps: dict[str, IndexSet | None] = {uid: a.index_map for uid, a in attempts_by_uid.items()}
    outcome: JobOutcome | None = job_outcome(job) if job else None
    job_uid = ((job or {}).get("metadata") or {}).get("uid")
    if job_uid:
        index_maps[job_uid] = _index_map_of(job) or index_maps.get(job_uid)
    by_index = _pods_by_index(pods, completions, attempts_by_uid, index_maps, now)

    done = record.completed if record else IndexSet()
    failed = IndexSet()
    if outcome is not None:
        job_map = index_maps.get(job_uid) if job_uid else None
        done = done | map_local(outcome.completed, job_map)
        failed = map_local(outcome.failed, job_map)
    ran_in_try = _completed_by_try(record)
    succeeded_pods = [a for group in by_index.values() for a in group if a.phase == "Succeeded"]
    done = done | IndexSet.of(a.index for a in succeeded_pods)
    for a in succeeded_pods:
        if a.try_number is not None:
            ran_in_try.setdefault(a.index, a.try_number)
    if record is not None and record.state == "failed":
        failed = failed | record.failed
    failed = failed - done

    ends = _ends(outcome, record)
    states = tuple(_state(i, by_index.get(i, ()), done, failed, ends) for i in range(completions))
    notes: list[str] = []
    if job is None:
        notes.append(
            f"{GC_NOTE}: the Job is gone (finished Jobs are garbage-collected after "
            "ttlSecondsAfterFinished): states come from the run ledger; pod attempts, exit codes and "
            "logs are no longer available"
            if record is not None and any(not a.job.startswith(CACHE_HIT_PREFIX) for a in record.attempts)
            else "no Job ran: the stage reused a cached output (ledger)"
            if record is not None and record.attempts
            else "no Job and no ledger record for this task instance yet"
        )
    return IndexGrid(
        completions=completions,
        states=states,
        attempts={i: tuple(g) for i, g in by_index.items()},
        ran_in_try=ran_in_try,
        job_exists=job is not None,
        pods_listed=pods is not None and job is not None,
        job_reason=_job_reason(outcome, record),
        notes=tuple(notes),
    )


GC_NOTE = "Job garbage-collected; from the ledger"
CACHE_HIT_PREFIX = "cache-hit:"  # the ``job`` of a cache hit's attempt (pipeline.memo.hit_job)


def job_presence(record: StageRecord | None, existing: Collection[str] | None) -> dict[str, Any]:
    """Whether the Jobs the ledger names still exist: ``state`` is ``exists`` (the latest
    attempt's Job), ``garbage_collected`` (it ran, and its Job is gone: TTL or a deletion),
    ``cache_hit`` (no Job ran), ``no_job`` (no attempt yet) or ``unknown`` (Jobs not listed);
    ``message`` says it in words, ``jobs`` is every attempt's ``{job, try, exists}``."""
    attempts = record.attempts if record is not None else ()
    jobs = [
        {
            "job": a.job,
            "try": a.try_number,
            "exists": None if existing is None or a.job.startswith(CACHE_HIT_PREFIX) else a.job in existing,
        }
        for a in attempts
    ]
    latest = attempts[-1] if attempts else None
    if latest is None:
        state, message = "no_job", "no Job recorded in the ledger yet"
    elif latest.job.startswith(CACHE_HIT_PREFIX):
        state, message = "cache_hit", "no Job ran: a cached output was reused; from the ledger"
    elif existing is None:
        state, message = "unknown", "the Jobs were not listed; from the ledger"
    elif latest.job in existing:
        state, message = "exists", f"Job {latest.job} exists"
    else:
        state, message = "garbage_collected", f"{GC_NOTE} (Job {latest.job} no longer exists)"
    return {"state": state, "message": message, "jobs": jobs}


def tries_summary(record: StageRecord | None) -> list[dict[str, Any]]:
    """Per Airflow try, from the ledger alone: its attempts (Jobs), the indexes they were given,
    completed and failed (counts), when the first started and the last ended, the last reason."""
    by_try: dict[int, list[Attempt]] = {}
    for a in record.attempts if record is not None else ():
        by_try.setdefault(a.try_number, []).append(a)
    out = []
    for try_number, attempts in sorted(by_try.items()):
        out.append(
            {
                "try": try_number,
                "attempts": len(attempts),
                "jobs": [a.job for a in attempts],
                "indexes": sum(int(a.counts.get("index_map") or 0) for a in attempts),
                "completed": sum(int(a.counts.get("completed") or 0) for a in attempts),
                "failed": sum(int(a.counts.get("failed") or 0) for a in attempts),
                "started": attempts[0].started,
                "ended": attempts[-1].ended,
                "reason": attempts[-1].reason,
            }
        )
    return out


def record_summary(record: StageRecord | None) -> dict[str, Any] | None:
    """The stage's ledger record as JSON for the view (results left out: they can be large)."""
    if record is None:
        return None
    output = record.output
    return {
        "tries": tries_summary(record),
        "inputs": {
            name: {"stage": i.stage, "manifest_digest": i.manifest_digest, "at": i.at}
            for name, i in sorted(record.inputs.items())
        },
        "state": record.state,
        "transitions": [list(t) for t in record.transitions],
        "spec_hash": record.spec_hash,
        "completed": str(record.completed),
        "failed": str(record.failed),
        "updated_at": record.updated_at,
        "attempts_dropped": record.attempts_dropped,
        "results": len(record.results),
        "results_truncated": record.results_truncated,
        "attempts": [
            {
                "try": a.try_number,
                "job": a.job,
                "uid": a.uid,
                "spec_hash": a.spec_hash,
                "index_map": None if a.index_map is None else str(a.index_map),
                "completed": None if a.completed is None else str(a.completed),
                "failed": None if a.failed is None else str(a.failed),
                "counts": dict(a.counts),
                "started": a.started,
                "ended": a.ended,
                "reason": a.reason,
                "job_created": a.job_created,
                "job_started": a.job_started,
                "job_ended": a.job_ended,
            }
            for a in record.attempts
        ],
        "output": None
        if output is None
        else {
            "name": output.name,
            "manifest_digest": output.manifest_digest,
            "bytes": output.bytes,
            "records": output.records,
            "contract": dict(output.contract) if output.contract else None,
        },
    }


# --------------------------------------------------------------------------- progress lines


def _short(indexes: IndexSet, limit: int) -> str:
    text = str(indexes)
    return text if len(text) <= limit else text[: limit - 3].rsplit(",", 1)[0] + ",..."


def progress_attention(
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    index_map: IndexSet | None = None,
    *,
    limit: int = 120,
) -> str:
    """What a progress line should name while a Job runs: ``"; failed indexes 3,17; backing off
    5-6; retrying 9 (OOMKilled 2, Error 1)"`` (logical indexes, lists capped), or ``""``.

    *failed*: out of per-index retries (``failedIndexes``); *backing off*: failed pods and no live
    pod (the controller waits before the next one); *retrying*: a live pod after failed ones. The
    reasons count the latest failed pod of each of those indexes.
    """
    if not job:
        return ""
    outcome = job_outcome(job)
    phases: dict[int, list[tuple[str, Mapping[str, Any]]]] = {}
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or "")):
        local = pod_index(pod)
        if local is not None:
            phases.setdefault(local, []).append(
                (str((pod.get("status") or {}).get("phase") or "Pending"), pod)
            )
    backoff: list[int] = []
    retrying: list[int] = []
    reasons: Counter[str] = Counter()
    for local, seen in phases.items():
        if local in outcome.completed:
            continue
        failed_pods = [p for phase, p in seen if phase == "Failed"]
        if not failed_pods:
            continue
        term, _ = _main_state(failed_pods[-1])
        reasons[_pod_reason(failed_pods[-1], term, "Failed") or "Error"] += 1
        if local in outcome.failed:
            continue
        live = any(phase in ("Running", "Pending") for phase, _ in seen)
        (retrying if live else backoff).append(local)
    parts = []
    for label, local_set in (
        ("failed indexes", outcome.failed),
        ("backing off", IndexSet.of(backoff)),
        ("retrying", IndexSet.of(retrying)),
    ):
        if local_set:
            parts.append(f"{label} {_short(map_local(local_set, index_map), limit)}")
    if not parts:
        return ""
    why = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common(4))
    return "; " + "; ".join(parts) + (f" ({why})" if why else "")
