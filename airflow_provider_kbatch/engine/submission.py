"""Idempotent, adoptable submission of one stage's Job.

:func:`plan_submission` is pure: given the Jobs that already exist for this task instance, what
the ledger says completed, and the desired spec hash, it decides to adopt a Job, create one (and
which indexes it runs), or do nothing because every index already completed. :func:`submit`
carries the plan out through a hook (no Kubernetes client here) and handles the create race:
a 409 is read back and adopted when it is ours. :func:`remove_superseded` deletes the earlier
attempts' Jobs once an attempt succeeded and the run ledger holds what they did.

"Ours" is the whole identity: the Job's identity annotations (full dag id, task id, run id, map
index: :func:`~airflow_provider_kbatch.spec.names.identity_annotations`) name this task instance
-- labels hold sanitised, hashed values and can collide -- and, for adoption, its labels and
``kbatch.io/spec-hash`` match. A Job under our name or selector that names another task
instance is never adopted: :class:`SubmissionError` (final) names it, what differs, and how to
fix it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.errors import KbatchApiError, KbatchError
from airflow_provider_kbatch.spec.intervals import IndexSet, map_local
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_DAG_ID,
    ANNOTATION_INDEX_MAP,
    ANNOTATION_MAP_INDEX,
    ANNOTATION_RUN_ID,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_TASK_ID,
    JobIdentity,
    identity_from_annotations,
    job_name,
    same_task_instance,
    selector_for,
)
from airflow_provider_kbatch.status import job_outcome

log = logging.getLogger(__name__)

GENERATION_ANNOTATION = "kbatch.io/generation"


class SubmissionError(KbatchError):
    """A Job holds this task instance's deterministic name but is not ours (another task
    instance, another spec). Final: a retry computes the same name."""

    final = True


@dataclass(frozen=True)
class Plan:
    action: Literal["adopt", "create", "done"]
    job_name: str
    generation: int
    index_map: IndexSet  # logical indexes the Job runs, in order
    existing: dict[str, Any] | None = None
    stale: tuple[str, ...] = ()  # unfinished Jobs of this task instance with another spec: delete them
    note: str = ""

    @property
    def resumed(self) -> bool:
        return self.action == "create" and self.note.startswith("resume")


def _annotations(job: dict[str, Any]) -> dict[str, str]:
    return dict(job.get("metadata", {}).get("annotations") or {})


def job_generation(job: dict[str, Any]) -> int:
    value = _annotations(job).get(GENERATION_ANNOTATION) or job.get("metadata", {}).get("labels", {}).get(
        "kbatch.io/attempt", "0"
    )
    return int(value) if str(value).isdigit() else 0


def job_index_map(job: dict[str, Any]) -> IndexSet:
    raw = _annotations(job).get(ANNOTATION_INDEX_MAP)
    if raw is not None:
        return IndexSet.parse(raw)
    return IndexSet.full(int(job.get("spec", {}).get("completions") or 1))


def _adopt(job: dict[str, Any], stale: tuple[str, ...], note: str) -> Plan:
    return Plan(
        "adopt",
        job["metadata"]["name"],
        job_generation(job),
        job_index_map(job),
        existing=job,
        stale=stale,
        note=note,
    )


def _completed_by(jobs: list[dict[str, Any]]) -> IndexSet:
    """Logical indexes the given Jobs completed (their status, mapped through their index maps)."""
    done = IndexSet.of([])
    for job in jobs:
        done = done | map_local(job_outcome(job).completed, job_index_map(job))
    return done


def plan_submission(
    *,
    identity: JobIdentity,
    spec_hash: str,
    completions: int,
    existing_jobs: list[dict[str, Any]],
    completed: IndexSet,
    resume: bool,
) -> Plan:
    """Decide what to do for this try of the task instance.

    ``existing_jobs`` are the Jobs found by the task instance's selector; :class:`SubmissionError`
    when one of them names another task instance in its identity annotations."""
    for job in existing_jobs:
        problem = identity_problem(job, identity)
        if problem is not None:
            raise SubmissionError(
                _foreign(None, job["metadata"]["name"], problem, "its labels match this task's")
            )
    ours = sorted(existing_jobs, key=job_generation)
    same_spec = [j for j in ours if _annotations(j).get(ANNOTATION_SPEC_HASH) == spec_hash]
    running_same = [j for j in same_spec if not job_outcome(j).finished]
    stale = tuple(
        j["metadata"]["name"]
        for j in ours
        if _annotations(j).get(ANNOTATION_SPEC_HASH) != spec_hash and not job_outcome(j).finished
    )
    if running_same:
        return _adopt(
            running_same[-1], stale, "adopting the running job of an earlier execute with the same spec"
        )
    this_try = [j for j in same_spec if job_generation(j) == identity.try_number]
    if this_try:
        return _adopt(this_try[-1], stale, "this try already ran this job; reporting its outcome")
    everything = IndexSet.full(completions)
    if resume:
        # The ledger is the durable record; Jobs of earlier attempts that still exist count too
        # (an attempt killed after its Job completed but before the ledger heard of it).
        completed = completed | _completed_by(same_spec)
        whole = [j for j in same_spec if job_outcome(j).succeeded and job_index_map(j) == everything]
        if whole and not everything - completed:
            note = "an earlier attempt's job of the same spec already completed; reporting its outcome"
            return _adopt(whole[-1], stale, note)
    remaining = everything - completed if resume else everything
    used = {job_generation(j) for j in ours}
    generation = identity.try_number if identity.try_number not in used else max(used) + 1
    name = job_name(identity, generation)
    if resume and not remaining:
        return Plan(
            "done", name, generation, IndexSet.of([]), stale=stale, note="every index already completed"
        )
    note = (
        f"resume: {len(completed & everything)} of {completions} indexes completed before, running {remaining}"
        if resume and len(remaining) < completions
        else "new job"
    )
    return Plan("create", name, generation, remaining, stale=stale, note=note)


def identity_problem(job: dict[str, Any], identity: JobIdentity) -> str | None:
    """What in ``job``'s identity annotations differs from ``identity`` (``None``: the same task
    instance; the try number may differ)."""
    annotations = _annotations(job)
    found = identity_from_annotations(annotations)
    if found is None:
        keys = (ANNOTATION_DAG_ID, ANNOTATION_TASK_ID, ANNOTATION_RUN_ID, ANNOTATION_MAP_INDEX)
        return f"its identity annotations ({', '.join(keys)}) are missing or malformed"
    if same_task_instance(found, identity):
        return None
    differs = [
        f"{key} is {str(getattr(found, attr))!r}, not {str(getattr(identity, attr))!r}"
        for key, attr in (
            (ANNOTATION_DAG_ID, "dag_id"),
            (ANNOTATION_TASK_ID, "task_id"),
            (ANNOTATION_RUN_ID, "run_id"),
            (ANNOTATION_MAP_INDEX, "map_index"),
        )
        if getattr(found, attr) != getattr(identity, attr)
    ]
    return "its annotations name another task instance: " + ", ".join(differs)


def ownership_problem(
    job: dict[str, Any], labels: dict[str, str], spec_hash: str, *, identity: JobIdentity | None
) -> str | None:
    """Why ``job`` (found under our name) is not this task instance's Job of this spec, or ``None``:
    identity annotations (when ``identity`` is known), labels, ``kbatch.io/spec-hash``."""
    problems = [identity_problem(job, identity)] if identity is not None else []
    job_labels = job.get("metadata", {}).get("labels") or {}
    wrong = [
        f"{k}={job_labels.get(k)!r} (expected {v!r})" for k, v in labels.items() if job_labels.get(k) != v
    ]
    if wrong:
        problems.append("its labels differ: " + ", ".join(wrong))
    found = _annotations(job).get(ANNOTATION_SPEC_HASH)
    if found != spec_hash:
        problems.append(f"{ANNOTATION_SPEC_HASH} is {found!r}, not {spec_hash!r} (another spec)")
    return "; ".join(p for p in problems if p) or None


def is_ours(
    job: dict[str, Any], labels: dict[str, str], spec_hash: str, *, identity: JobIdentity | None
) -> bool:
    """A Job found under our name belongs to this task instance and runs this spec."""
    return ownership_problem(job, labels, spec_hash, identity=identity) is None


def _foreign(namespace: str | None, name: str, problem: str, found: str) -> str:
    where = f"{namespace}/{name}" if namespace else name
    return (
        f"job {where} exists ({found}) but was not created for this task instance and spec: {problem}. "
        "It was not adopted, and nothing was submitted. If it is not needed, delete it "
        f"(kubectl delete job {name}{f' -n {namespace}' if namespace else ''}); otherwise rename this "
        "task or DAG, since job names and labels are derived from them"
    )


def submit(
    hook: Any, namespace: str, manifest: dict[str, Any], spec_hash: str
) -> tuple[dict[str, Any], bool]:
    """Create the Job; on a 409 read it back and adopt it if it is ours. Returns (job, created)."""
    from airflow_provider_kbatch.errors import JobAlreadyExists

    name = manifest["metadata"]["name"]
    try:
        return hook.create_job(namespace, manifest), True
    except JobAlreadyExists as exists:
        job = exists.job
        labels = manifest["metadata"].get("labels", {})
        identity = identity_from_annotations(manifest["metadata"].get("annotations"))
        problem = (
            ownership_problem(job, labels, spec_hash, identity=identity) if job else "it was not read back"
        )
        if problem is None:
            log.info(
                "job %s/%s already exists and is ours (same identity, labels and spec hash): adopting it",
                namespace,
                name,
            )
            return job, False
        raise SubmissionError(_foreign(namespace, name, problem, "the create returned 409")) from exists


def remove_superseded(
    hook: Any, namespace: str, identity: JobIdentity, succeeded: dict[str, Any], *, log: Any = log
) -> list[str]:
    """Delete (foreground: pods first) the finished Jobs of earlier attempts of this task instance
    once ``succeeded`` -- a Job of it that completed -- made them history. Returns the names deleted.

    A resume leaves the failed attempt's Job (``Failed 5/6``) beside the resumed one
    (``Complete 1/1``): it alarms whoever reads ``kubectl get jobs`` and keeps its pods, and
    nothing needs it any more. A Job is removed only when all of this holds, else kept and said why:

    * its annotations name this task instance (labels are sanitised hashes; annotations are exact);
    * it is finished and of an earlier generation than ``succeeded``;
    * the run ledger recorded the end of its attempt (job name and uid) and, under the stage's
      current spec, every index it completed: the ledger, not the Job, is what a later resume reads.
      Its failure message (exit codes, reasons, last log lines) is already in that try's task log.

    Best effort: an API error is logged and the Job kept (the stage succeeded either way).
    """
    meta = succeeded.get("metadata") or {}
    if not job_outcome(succeeded).succeeded:
        return []
    record = ledger.read_stage(hook, namespace, identity)
    if record is None:
        return []
    ended = {(a.job, a.uid) for a in record.attempts if a.ended is not None}
    removed: list[str] = []
    for job in sorted(hook.list_jobs(namespace, selector_for(identity)), key=job_generation):
        name, uid = job["metadata"]["name"], job["metadata"].get("uid")
        if uid == meta.get("uid") or not same_task_instance(
            identity_from_annotations(_annotations(job)), identity
        ):
            continue
        outcome = job_outcome(job)
        why_kept = None
        if not outcome.finished:
            why_kept = "it has not finished"
        elif job_generation(job) >= job_generation(succeeded):
            why_kept = f"it is not older than {meta.get('name')}"
        elif (name, uid) not in ended:
            why_kept = "the run ledger has no record of its end"
        elif _annotations(job).get(ANNOTATION_SPEC_HASH) == record.spec_hash and not map_local(
            outcome.completed, job_index_map(job)
        ).issubset(record.completed):
            why_kept = "the run ledger lacks indexes it completed"
        if why_kept:
            log.info("job %s/%s of an earlier attempt kept: %s", namespace, name, why_kept)
            continue
        try:
            hook.delete_job(namespace, name, propagation="Foreground")
        except KbatchApiError as err:
            log.warning("could not delete superseded job %s/%s: %s", namespace, name, err)
            continue
        removed.append(name)
        log.info(
            "deleted job %s/%s and its pods: attempt %d (%s) is superseded by %s; its record stays in the run ledger",
            namespace,
            name,
            job_generation(job),
            outcome.reason or ("complete" if outcome.succeeded else "failed"),
            meta.get("name"),
        )
    return removed
