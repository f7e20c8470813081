"""KbatchJobOperator's compensation and memoization: the glue between the operator and
:mod:`airflow_provider_kbatch.engine.compensation` / :mod:`airflow_provider_kbatch.engine.memo`.

Kept out of ``operators/job.py`` (which calls these with itself): the checks of ``on_failure``,
``cache`` and ``cache_version``; after a failed try, its compensation Job (quarantine, then
``on_failure`` when due); before a memoized stage is submitted, the cache lookup, and after it
succeeded, its cache entry.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_provider_kbatch.engine.waiter import wait_for_job
from airflow_provider_kbatch.glue.assets import emit_output_event
from airflow_provider_kbatch.glue.errors import airflow_errors
from airflow_provider_kbatch.operators.stage import Stage
from airflow_provider_kbatch.spec.actions import as_action, cache_problems
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kbatch.operators.job import KbatchJobOperator


def option_problems(op: KbatchJobOperator) -> list[KbatchSpecError]:
    from airflow_provider_kbatch.pipeline.memo import cache_workspace_problem

    problems = list(cache_problems(op.cache, op.cache_version))
    try:
        as_action(op.on_failure)
    except KbatchSpecError as err:
        problems.append(err)
    if isinstance(op.cache, bool):
        bad = cache_workspace_problem(op.cache, op.workspace, op.output_name)
        problems += [bad] if bad else []
    return problems


def compensate_failed_try(
    op: KbatchJobOperator,
    context: Context,
    identity: JobIdentity,
    namespace: str,
    job: dict[str, Any],
    result: dict[str, Any],
    retryable: bool,
) -> None:
    """Quarantine the failed try's partial output and run ``on_failure`` when due
    (engine/compensation.py); the try's own failure is raised after it."""
    output = op.output_name if op.workspace is not None else None
    if op.on_failure is None and output is None:
        return
    from airflow_provider_kbatch.engine.compensation import compensate
    from airflow_provider_kbatch.pipeline.compensation import is_final

    with airflow_errors():
        stage = op.stage(context)
        action = as_action(op.on_failure)
    final = is_final(
        try_number=identity.try_number,
        max_tries=getattr(context["ti"], "max_tries", None),
        retries=int(op.retries or 0),
        retryable=retryable,
    )
    completions = int(result.get("completions") or stage.spec.completions)
    failed = IndexSet.full(completions) - IndexSet.parse(result.get("completed_indexes") or "")
    compensate(
        op.hook,
        namespace,
        identity,
        stage=stage.spec,
        failed_job=job,
        output=output,
        action=action,
        failed=failed,
        resume=op.resume,
        final=final,
        wait=partial(wait_for_job_named, op),
        log=op.log,
    )


def wait_for_job_named(
    op: KbatchJobOperator, namespace: str, name: str, timeout: float
) -> dict[str, Any] | None:
    """Wait (watch) for a one-pod Job of ours, at most ``timeout`` seconds; the Job as it is."""

    async def run() -> Any:
        return await asyncio.wait_for(
            wait_for_job(
                op.async_hook(),
                namespace,
                name,
                index_map=IndexSet.full(1),
                settings=op.wait_settings(),
                log=op.log,
            ),
            timeout,
        )

    try:
        asyncio.run(run())
    except asyncio.TimeoutError:
        op.log.error("job %s/%s did not finish within %ss", namespace, name, timeout)
    return op.hook.get_job(namespace, name)


def cache_key_of(op: KbatchJobOperator, stage: Stage) -> str:
    from airflow_provider_kbatch.pipeline.memo import cache_key

    identity = stage.identity
    ports, _ = op._declared_producers(stage.ports)
    return cache_key(
        dag_id=identity.dag_id,
        task_id=identity.task_id,
        map_index=identity.map_index,
        spec_hash=spec_hash(stage.spec),  # before wiring: the same in every run
        ports=ports,
        input_digests=op._resolved_inputs,
        claim=op.workspace.claim_name if op.workspace is not None else None,
        cache_version=op.cache_version,
    )


def cache_hit(
    op: KbatchJobOperator, context: Context, stage: Stage, namespace: str, digest: str, key: str
) -> dict[str, Any] | None:
    """The result of a cache hit (recorded, Asset event emitted), or ``None`` (a miss)."""
    from airflow_provider_kbatch.engine import memo
    from airflow_provider_kbatch.pipeline.results import results_ref

    identity = stage.identity
    with airflow_errors():
        entry = memo.lookup(op.hook, namespace, identity, key, op.log)
        if entry is None:
            return None
        recorded = memo.record_hit(op.hook, namespace, identity, entry, spec_hash=digest, log=op.log)
    if recorded is not None:
        emit_output_event(context, namespace, identity, recorded, hook=op.hook, log=op.log)
    every = IndexSet.full(entry.completions)
    return {
        "name": None,
        "namespace": namespace,
        "uid": None,
        "completions": entry.completions,
        "completed_indexes": str(every),
        "failed_indexes": "",
        "results": {},
        "results_inline": 0,
        "results_total": None,
        # the results are the producing run's: read_results(hook, **results_ref)
        "results_ref": results_ref(
            namespace, identity.dag_id, entry.run_id, identity.task_id, identity.map_index
        ),
        "output": dict(entry.output) if entry.output else None,
        "cache": {"hit": True, "key": key, "source_run_id": entry.run_id},
        "summary": f"{len(every)}/{entry.completions} indexes reused from run {entry.run_id} (cache hit)",
    }


def cache_store(
    op: KbatchJobOperator, context: Context, identity: JobIdentity, namespace: str, key: str
) -> None:
    from airflow_provider_kbatch.engine import memo

    with airflow_errors():
        stage = op.stage(context)
    if op.output_name and op.workspace is not None:
        from airflow_provider_kbatch.engine import storage

        # bind first: the entry points to the location the ledger records
        storage.record_output_location(op.hook, namespace, identity, op.output_name)
    entry = memo.store(
        op.hook,
        namespace,
        identity,
        key,
        completions=stage.spec.completions,
        spec_hash=spec_hash(stage.spec),
        output_name=op.output_name if op.workspace is not None else None,
    )
    if entry is not None:
        op.log.info("cache: stored entry %s for run %s", key, identity.run_id)


def cache_key_again(op: KbatchJobOperator, context: Context, namespace: str) -> str:
    """The cache key when ``execute_complete`` was not given it (``airflow dags test`` resumes a
    deferred task with the trigger's event only; an older kbatch did not pass it): the stage
    rebuilt, its inputs' digests read back from the run ledger."""
    from airflow_provider_kbatch.engine import storage
    from airflow_provider_kbatch.pipeline.handoff import check_inputs

    with airflow_errors():
        stage = op.stage(context)
        if op.workspace is not None and stage.ports.inputs:
            ports, declared = op._declared_producers(stage.ports)
            identity = stage.identity
            data = storage.read_ledger(op.hook, namespace, identity.dag_id, identity.run_id)
            resolved = check_inputs(
                data,
                stage=identity.task_id,
                run_id=identity.run_id,
                inputs=ports.inputs,
                accepts=ports.accepts,
                declared=declared,
                check_location=False,
            )
            op._resolved_inputs = {n: i.manifest_digest for n, i in resolved.items()}
        return cache_key_of(op, stage)
