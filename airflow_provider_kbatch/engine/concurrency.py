"""Concurrency across DAG runs (``concurrency_policy=``), driven through a hook: who blocks a
``Forbid`` stage, taking the stage's lock, and ``Replace``'s deletions with their ledger records.

The policy, the lock's names and its pure CAS merge are in
:mod:`airflow_provider_kbatch.spec.concurrency`. Every read is a list of the stage's Jobs (one
label selector, every run) and one read of the lock ConfigMap; every write of the lock goes through
the hook's compare-and-swap loop, every write of a ledger through :mod:`engine.ledger`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.concurrency import (
    HOLDER_GRACE_SECONDS,
    REPLACED,
    Holder,
    holder_of,
    lock_labels,
    lock_name,
    take,
    task_selector,
)
from airflow_provider_kbatch.spec.intervals import IndexSet, map_local
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_INDEX_MAP,
    ANNOTATION_SPEC_HASH,
    JobIdentity,
    identity_from_annotations,
)
from airflow_provider_kbatch.status import job_outcome

log = logging.getLogger(__name__)


class ConcurrencyTimeout(KbatchError):
    """A ``Forbid`` stage waited longer than ``concurrency_timeout`` for another run's Job. Final:
    a retry would wait for the same Job."""

    final = True


class Replaced(KbatchError):
    """This run's Job of the stage was replaced by a newer run (``concurrency_policy="Replace"``).
    Final: retrying would replace the newer run in turn."""

    final = True


@dataclass(frozen=True)
class Blocker:
    """Another run's Job (or its lock) the stage waits for."""

    run_id: str
    job: str
    why: str  # "active" (its Job runs) or "lock" (it took the lock and is creating its Job)

    def describe(self) -> str:
        return f"run {self.run_id}'s Job {self.job}"


# --------------------------------------------------------------------------- the rule (pure)


def _identity(job: dict[str, Any]) -> JobIdentity | None:
    return identity_from_annotations((job.get("metadata") or {}).get("annotations"))


def _same_stage(found: JobIdentity | None, identity: JobIdentity) -> bool:
    return found is not None and (found.dag_id, found.task_id, found.map_index) == (
        identity.dag_id,
        identity.task_id,
        identity.map_index,
    )


def active_of_other_runs(jobs: list[dict[str, Any]], identity: JobIdentity) -> list[dict[str, Any]]:
    """The stage's Jobs of *other* runs that have not finished, oldest first."""
    found = []
    for job in jobs:
        other = _identity(job)
        if (
            _same_stage(other, identity)
            and other is not None
            and other.run_id != identity.run_id
            and not job_outcome(job).finished
        ):
            found.append(job)
    return sorted(found, key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]))


def forbid_blocker(
    jobs: list[dict[str, Any]], lock: dict[str, Any] | None, identity: JobIdentity, now: float
) -> tuple[Blocker | None, Holder | None]:
    """What keeps a ``Forbid`` stage from submitting now (None: nothing), and the stale holder it
    may take the lock from. ``jobs``: the stage's Jobs (:func:`task_selector`); ``lock``: the lock
    ConfigMap, or None."""
    active = active_of_other_runs(jobs, identity)
    if active:
        run = _identity(active[0])
        return Blocker(run.run_id if run else "?", active[0]["metadata"]["name"], "active"), None
    holder = holder_of((lock or {}).get("data"))
    if holder is None or holder.run_id == identity.run_id:
        return None, None
    held = next((j for j in jobs if j["metadata"]["name"] == holder.job), None)
    if held is None and now - holder.at < HOLDER_GRACE_SECONDS:
        return Blocker(holder.run_id, holder.job, "lock"), None
    return None, holder  # its Job finished (an active one is listed above), or never came: stale


# --------------------------------------------------------------------------- Forbid (sync and async)


def _lock(
    hook: Any, namespace: str, identity: JobIdentity, mutate: Callable[[dict[str, str]], dict[str, str]]
) -> Holder | None:
    data = hook.update_config_map_cas(namespace, lock_name(identity), mutate, labels=lock_labels(identity))
    return holder_of(data)


def try_forbid(
    hook: Any, namespace: str, identity: JobIdentity, job_name: str, *, now: Callable[[], float] = time.time
) -> Blocker | None:
    """Take the stage's lock for this run (about to create ``job_name``) unless another run's Job
    is active or holds it: then the :class:`Blocker`, and nothing is written."""
    jobs = hook.list_jobs(namespace, task_selector(identity))
    lock = hook.get_config_map(namespace, lock_name(identity))
    blocker, stale = forbid_blocker(jobs, lock, identity, now())
    if blocker is not None:
        return blocker
    me = Holder(identity.run_id, job_name, now())
    got = _lock(hook, namespace, identity, partial(take, me=me, only_from=stale))
    if got is None or got.run_id != identity.run_id:  # another run took it first
        return Blocker(got.run_id if got else "?", got.job if got else "?", "lock")
    return None


async def aforbid_blocker(hook: Any, namespace: str, identity: JobIdentity, now: float) -> Blocker | None:
    """Read-only :func:`forbid_blocker` through the async hook (the trigger's look)."""
    jobs = await hook.list_jobs(namespace, task_selector(identity))
    lock = await hook.get_config_map(namespace, lock_name(identity))
    return forbid_blocker(jobs, lock, identity, now)[0]


# --------------------------------------------------------------------------- Replace


def _attempt_of(job: dict[str, Any]) -> tuple[IndexSet, IndexSet, IndexSet]:
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(ANNOTATION_INDEX_MAP)
    index_map = (
        IndexSet.parse(raw) if raw else IndexSet.full(int((job.get("spec") or {}).get("completions") or 1))
    )
    outcome = job_outcome(job)
    return index_map, map_local(outcome.completed, index_map), map_local(outcome.failed, index_map)


def record_replaced(hook: Any, namespace: str, job: dict[str, Any], *, by_run: str) -> str:
    """Write to the ledger of ``job``'s run that its attempt ended, replaced by run ``by_run``
    (the attempt is added first when that run had not recorded it yet). Returns the reason."""
    victim = _identity(job)
    if victim is None:
        raise KbatchError(f"job {job['metadata']['name']} has no identity annotations")
    meta = job["metadata"]
    index_map, completed, failed = _attempt_of(job)
    reason = f"{REPLACED}{by_run} (concurrency_policy=Replace): job {meta['name']} deleted"
    key = rules.stage_key(victim.task_id, victim.map_index)
    at = ledger._now()

    def mutate(data: dict[str, str]) -> dict[str, str]:
        started = rules.record_attempt_started(
            data,
            key,
            try_number=victim.try_number,
            job=meta["name"],
            uid=meta.get("uid"),
            spec_hash=(meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH, ""),
            index_map=index_map,
            at=at,
            task_id=victim.task_id,
            map_index=victim.map_index,
        )
        return rules.record_attempt_finished(
            started,
            key,
            job=meta["name"],
            uid=meta.get("uid"),
            succeeded=False,
            at=at,
            completed=completed,
            failed=failed,
            reason=reason,
        )

    ledger.write(hook, namespace, victim.dag_id, victim.run_id, mutate)
    return reason


def replace_others(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    job_name: str,
    *,
    now: Callable[[], float] = time.time,
    log: Any = log,
) -> list[str]:
    """Take the stage's lock whatever holds it, then delete (background) every other run's active
    Job of the stage, each after its run's ledger recorded the replacement. The names deleted."""
    _lock(
        hook, namespace, identity, partial(take, me=Holder(identity.run_id, job_name, now()), only_from="any")
    )
    deleted = []
    for job in active_of_other_runs(hook.list_jobs(namespace, task_selector(identity)), identity):
        name = job["metadata"]["name"]
        reason = record_replaced(hook, namespace, job, by_run=identity.run_id)
        if hook.delete_job(namespace, name, propagation="Background"):
            deleted.append(name)
            log.info("deleted job %s/%s: %s", namespace, name, reason)
    return deleted


def still_holder(hook: Any, namespace: str, identity: JobIdentity) -> Holder | None:
    """``None`` when the stage's lock still names this run; else the run that holds it now."""
    lock = hook.get_config_map(namespace, lock_name(identity))
    holder = holder_of((lock or {}).get("data"))
    return None if holder is not None and holder.run_id == identity.run_id else holder


def replaced_reason(hook: Any, namespace: str, identity: JobIdentity, job_name: str) -> str | None:
    """The ledger's reason when this run's attempt with ``job_name`` was replaced, else None."""
    record = ledger.read_stage(hook, namespace, identity)
    for attempt in reversed(record.attempts if record else []):
        if attempt.job == job_name:
            reason = attempt.reason or ""
            return reason if reason.startswith(REPLACED) else None
    return None
