"""Idempotent, adoptable submission of one stage's Job.

:func:`plan_submission` is pure: given the Jobs that already exist for this task instance, what
the ledger says completed, and the desired spec hash, it decides to adopt a Job, create one (and
which indexes it runs), or do nothing because every index already completed. :func:`submit`
carries the plan out through a hook (no Kubernetes client here) and handles the create race:
a 409 is read back and adopted when it is ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.spec.intervals import IndexSet, map_local
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_INDEX_MAP,
    ANNOTATION_SPEC_HASH,
    JobIdentity,
    job_name,
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
    """Decide what to do for this try of the task instance."""
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


def is_ours(job: dict[str, Any], labels: dict[str, str], spec_hash: str) -> bool:
    """A Job found under our name belongs to this task instance and runs this spec."""
    meta = job.get("metadata", {})
    job_labels = meta.get("labels") or {}
    return (
        all(job_labels.get(k) == v for k, v in labels.items())
        and _annotations(job).get(ANNOTATION_SPEC_HASH) == spec_hash
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
        if job and is_ours(job, manifest["metadata"].get("labels", {}), spec_hash):
            log.info(
                "job %s/%s already exists and is ours (same labels and spec hash): adopting it",
                namespace,
                name,
            )
            return job, False
        raise SubmissionError(
            f"job {namespace}/{name} exists but was not created for this task instance and spec "
            "(labels or kbatch.io/spec-hash differ); delete it or change the task"
        ) from exists
