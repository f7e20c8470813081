"""The run ledger seen from the operator: one ConfigMap per DAG run, updated by compare-and-swap.

The record schema and the merge rules are pure (:mod:`airflow_provider_kbatch.pipeline.records`);
this module only binds them to a task instance and runs them through the hook's CAS loop, so
concurrent stages of one run (and a backfill's many runs) never lose each other's writes.
"""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import JobIdentity


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(identity: JobIdentity) -> str:
    return rules.stage_key(identity.task_id, identity.map_index)


def _name(identity: JobIdentity) -> str:
    return rules.ledger_name(identity.dag_id, identity.run_id)


def _update(hook: Any, namespace: str, identity: JobIdentity, mutate: Any) -> dict[str, str]:
    return dict(
        hook.update_config_map_cas(
            namespace,
            _name(identity),
            mutate,
            labels=rules.ledger_labels(identity.dag_id, identity.run_id),
        )
    )


def _data(hook: Any, namespace: str, identity: JobIdentity) -> dict[str, str]:
    config_map = hook.get_config_map(namespace, _name(identity))
    return dict((config_map or {}).get("data") or {})


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
        )

    return rules.read_stage(_update(hook, namespace, identity, mutate), _key(identity))
