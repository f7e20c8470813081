"""Every index's result, kept in results ConfigMaps and read back (I/O through a hook).

The layout and the rules are pure (:mod:`airflow_provider_kbatch.pipeline.results`): one or more
ConfigMaps per attempt, owned by the run's ledger ConfigMap. :func:`store` writes an attempt's
results (idempotent: results only grow), :func:`gather` is what the operator's XCom is built
from, and :func:`read_results` is the public call that returns them all::

    from airflow_provider_kbatch.engine.results import read_results
    from airflow_provider_kbatch.hooks.kbatch import KbatchHook

    xcom = ti.xcom_pull(task_ids="crunch")
    results = xcom["results"]                       # the lowest indexes, up to 48 KiB
    if xcom["results_inline"] < xcom["results_total"]:
        results = read_results(KbatchHook(), **xcom["results_ref"])   # {index: result}, every one

The hook needs ConfigMaps ``get``, ``list``, ``create`` and ``update`` (granted by the Role in
``deploy/helm/kbatch/templates/rbac.yaml``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.submission import job_generation, job_index_map
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline import results as rules
from airflow_provider_kbatch.pipeline.summary import split_output_summary
from airflow_provider_kbatch.spec.names import ANNOTATION_SPEC_HASH, JobIdentity, identity_from_annotations
from airflow_provider_kbatch.status import to_logical

Results = Mapping[int, Mapping[str, Any]]


def stored(
    hook: Any, namespace: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> list[rules.StoredResults]:
    """The attempts of a task instance that stored results, oldest first (one list request)."""
    selector = rules.results_selector(dag_id, run_id, task_id, map_index)
    return rules.stored_attempts(
        hook.list_config_maps(namespace, selector),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
    )


def read_results(
    hook: Any, namespace: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> dict[int, dict[str, Any]]:
    """Every per-index result of a task instance (logical index -> result), across its attempts
    under the stage's current spec hash (a later attempt wins), as its XCom's ``results_ref``
    names it. ``{}`` when it reported none. Raises ``LedgerIdentityError`` when the ConfigMap under
    the run's ledger name belongs to another run."""
    data = ledger.read(hook, namespace, dag_id, run_id)
    record = records.read_stage(data, records.stage_key(task_id, map_index))
    attempts = stored(hook, namespace, dag_id, run_id, task_id, map_index)
    return rules.merge_results(
        attempts,
        spec_hash=record.spec_hash if record is not None else None,
        preview=rules.legacy_preview(record),
    )


def store(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    job: Mapping[str, Any],
    results: Results,
    *,
    generation: int,
    spec_hash: str | None = None,
    already: rules.StoredResults | None = None,
) -> list[str]:
    """Write the results of the attempt that ran ``job`` (merged with what it ``already`` stored),
    under ``spec_hash`` (default: the Job's ``kbatch.io/spec-hash``); returns the ConfigMaps
    written (none when nothing changed)."""
    meta = job.get("metadata") or {}
    merged = {**(already.results if already is not None else {}), **results}
    if not merged or (already is not None and merged == dict(already.results)):
        return []
    owner = ledger.read_config_map(hook, namespace, identity.dag_id, identity.run_id)
    bodies = rules.results_config_maps(
        dag_id=identity.dag_id,
        run_id=identity.run_id,
        task_id=identity.task_id,
        map_index=identity.map_index,
        job=meta["name"],
        uid=meta["uid"],
        generation=generation,
        spec_hash=spec_hash or (meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH),
        results=merged,
        owner=owner if owner is not None and (owner.get("metadata") or {}).get("uid") else None,
    )
    for body in bodies:
        hook.put_config_map(namespace, body)
    return [body["metadata"]["name"] for body in bodies]


def _job_key(job: Mapping[str, Any]) -> tuple[str, str | None]:
    """(name, uid) of a Job: how a stored attempt names the Job that ran it."""
    meta = job.get("metadata") or {}
    return (str(meta.get("name") or ""), meta.get("uid"))


def _attempt_of(
    attempts: list[rules.StoredResults], key: tuple[str, str | None]
) -> rules.StoredResults | None:
    return next((a for a in attempts if (a.job, a.uid) == key), None)


def gather(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    record: records.StageRecord | None,
    *,
    job: Mapping[str, Any] | None = None,
    results: Results | None = None,
    generation: int = 0,
    listed: list[rules.StoredResults] | None = None,
) -> dict[int, dict[str, Any]]:
    """Every result of the stage after the attempt that ran ``job`` reported ``results``: stores
    them (:func:`store`) and merges those earlier attempts of the same spec stored. Makes no
    request when neither this attempt nor the ledger ``record`` has results to keep or read, nor
    to list when the caller ``listed`` the stored attempts already (:func:`stored`)."""
    results = dict(results or {})
    meta = (job or {}).get("metadata") or {}
    this = _job_key(job or {})
    attempts: list[rules.StoredResults] = list(listed or ())
    if listed is None and (results or rules.has_stored_results(record, besides=this)):
        attempts = stored(
            hook, namespace, identity.dag_id, identity.run_id, identity.task_id, identity.map_index
        )
    if job is not None and results:
        mine = _attempt_of(attempts, this)
        recorded = [a.spec_hash for a in (record.attempts if record else ()) if (a.job, a.uid) == this]
        spec = recorded[-1] if recorded else (meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
        store(hook, namespace, identity, job, results, generation=generation, spec_hash=spec, already=mine)
        attempts = [a for a in attempts if (a.job, a.uid) != this]
        attempts.append(
            rules.StoredResults(
                job=str(this[0]),
                uid=str(this[1]),
                generation=generation,
                spec_hash=spec,
                created="",  # appended last: merge_results lets it win
                results={**(mine.results if mine else {}), **results},
            )
        )
    return rules.merge_results(
        attempts,
        spec_hash=record.spec_hash if record is not None else None,
        preview=rules.legacy_preview(record),
    )


def of_attempt(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    job: Mapping[str, Any],
    listed: list[rules.StoredResults] | None = None,
) -> rules.StoredResults | None:
    """What the attempt that ran ``job`` stored, or None: among the ``listed`` attempts, else
    those :func:`stored` lists (one request)."""
    if listed is None:
        listed = stored_for(hook, namespace, identity)
    return _attempt_of(listed, _job_key(job))


def stored_for(hook: Any, namespace: str, identity: JobIdentity) -> list[rules.StoredResults]:
    """:func:`stored` for the task instance of ``identity`` (one list request)."""
    return stored(hook, namespace, identity.dag_id, identity.run_id, identity.task_id, identity.map_index)


def rescue(hook: Any, namespace: str, job: Mapping[str, Any], results: Results) -> list[str]:
    """Store the results (Job-local index -> termination message) of pods a wait saw deleted
    before the Job ended, under the attempt of ``job`` (its identity from the Job's annotations),
    so that :func:`airflow_provider_kbatch.engine.outcome.finish_stage` finds them when their pods
    are gone. Returns the ConfigMaps written; none for a Job that is not a kbatch stage's."""
    meta = job.get("metadata") or {}
    identity = identity_from_annotations(meta.get("annotations"))
    if identity is None or not results or not meta.get("uid"):
        return []
    index_map = job_index_map(dict(job))
    logical = {
        to_logical(local, index_map): split_output_summary(dict(value))[0] for local, value in results.items()
    }
    already = of_attempt(hook, namespace, identity, job)
    return store(
        hook, namespace, identity, job, logical, generation=job_generation(dict(job)), already=already
    )


def keeper(hook: Any, namespace: str, log: Any) -> Callable[[Mapping[str, Any], Results], Awaitable[bool]]:
    """What a wait (:func:`~airflow_provider_kbatch.engine.waiter.wait_for_job`, ``keep=``) calls
    to store the results of the pods it saw deleted: :func:`rescue` in a thread (``hook`` is a
    sync hook). A failure is logged, not raised, and returns False: the wait keeps them and tries
    again, and the outcome read at the end names what it cannot find."""

    async def keep(job: Mapping[str, Any], results: Results) -> bool:
        try:
            written = await asyncio.to_thread(rescue, hook, namespace, job, results)
        except Exception as err:
            log.warning("storing the results of %d deleted pods failed: %s", len(results), err)
            return False
        log.info(
            "kept the results of %d pods deleted before job %s ended (%d results ConfigMaps)",
            len(results), (job.get("metadata") or {}).get("name"), len(written),
        )  # fmt: skip
        return True

    return keep
