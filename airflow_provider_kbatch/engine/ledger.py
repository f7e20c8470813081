"""The run ledger seen from the operator: one ConfigMap per DAG run, updated by compare-and-swap.

The record schemas and the merge rules are pure (:mod:`airflow_provider_kbatch.pipeline.records`);
this module binds them to a task instance and runs them through the hook's CAS loop, so
concurrent stages of one run (and a backfill's many runs) never lose each other's writes.

Every ledger write goes through :func:`write`, and every read by name through :func:`read`:

* the ConfigMap is created with the run's labels and identity annotations (dag id, run id, schema
  version), which are also added to a ledger an older provider created without them;
* a ConfigMap under the ledger's name whose annotations name another run is refused
  (:class:`~airflow_provider_kbatch.pipeline.records.LedgerIdentityError`, final) before anything
  is read from it or written to it;
* what a merge rule returns is passed through :func:`~airflow_provider_kbatch.pipeline.records.shrink`,
  so the ledger stays under its size budget (oldest history dropped first) and a write that could
  not fit fails with ``LedgerTooLarge`` instead of the API server's 422.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import JobIdentity

Mutate = Callable[[dict[str, str]], dict[str, str]]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(identity: JobIdentity) -> str:
    return rules.stage_key(identity.task_id, identity.map_index)


def within_budget(mutate: Mutate, budget: int = rules.LEDGER_BUDGET_BYTES) -> Mutate:
    """``mutate`` followed by :func:`~airflow_provider_kbatch.pipeline.records.shrink` (still pure)."""

    def bounded(data: dict[str, str]) -> dict[str, str]:
        return rules.shrink(mutate(data), budget)

    return bounded


def write(hook: Any, namespace: str, dag_id: str, run_id: str, mutate: Mutate) -> dict[str, str]:
    """Apply the pure ``mutate`` to the run's ledger (identity checked, size bounded); the data written."""
    return dict(
        hook.update_config_map_cas(
            namespace,
            rules.ledger_name(dag_id, run_id),
            within_budget(mutate),
            labels=rules.ledger_labels(dag_id, run_id),
            annotations=rules.ledger_annotations(dag_id, run_id),
            check=partial(rules.check_ledger, dag_id=dag_id, run_id=run_id),
        )
    )


def read_config_map(hook: Any, namespace: str, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The run's ledger ConfigMap (identity checked), or ``None``."""
    config_map = hook.get_config_map(namespace, rules.ledger_name(dag_id, run_id))
    rules.check_ledger(config_map, dag_id, run_id)
    return dict(config_map) if config_map is not None else None


def read(hook: Any, namespace: str, dag_id: str, run_id: str) -> dict[str, str]:
    """The data of the run's ledger (``{}`` when it does not exist yet), identity checked."""
    return dict((read_config_map(hook, namespace, dag_id, run_id) or {}).get("data") or {})


def _update(hook: Any, namespace: str, identity: JobIdentity, mutate: Mutate) -> dict[str, str]:
    return write(hook, namespace, identity.dag_id, identity.run_id, mutate)


def _data(hook: Any, namespace: str, identity: JobIdentity) -> Mapping[str, str]:
    return read(hook, namespace, identity.dag_id, identity.run_id)


def completed_for_resume(hook: Any, namespace: str, identity: JobIdentity, spec_hash: str) -> IndexSet:
    """Logical indexes of this stage that completed in earlier attempts under the same spec."""
    return rules.completed_for_resume(_data(hook, namespace, identity), _key(identity), spec_hash)


def read_stage(hook: Any, namespace: str, identity: JobIdentity) -> rules.StageRecord | None:
    return rules.read_stage(_data(hook, namespace, identity), _key(identity))


def attempt_started(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    *,
    job: str,
    uid: str,
    spec_hash: str,
    index_map: IndexSet,
) -> None:
    mutate = partial(
        rules.record_attempt_started,
        key=_key(identity),
        try_number=identity.try_number,
        job=job,
        uid=uid,
        spec_hash=spec_hash,
        index_map=index_map,
        at=_now(),
        task_id=identity.task_id,
        map_index=identity.map_index,
    )
    _update(hook, namespace, identity, lambda data: mutate(data))


def attempt_finished(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    *,
    job: str,
    uid: str,
    succeeded: bool,
    completed: IndexSet,
    failed: IndexSet,
    reason: str | None,
    results: dict[int, dict[str, Any]],
    output: dict[str, Any] | None = None,
    job_times: Mapping[str, str | None] | None = None,
) -> rules.StageRecord | None:
    at = _now()

    def mutate(data: dict[str, str]) -> dict[str, str]:
        return rules.record_attempt_finished(
            data,
            _key(identity),
            job=job,
            uid=uid,
            succeeded=succeeded,
            at=at,
            completed=completed,
            failed=failed,
            reason=reason,
            results=results,
            output=output,
            job_times=job_times,
        )

    return rules.read_stage(_update(hook, namespace, identity, mutate), _key(identity))
