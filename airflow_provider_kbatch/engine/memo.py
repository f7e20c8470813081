"""Memoized stages seen from the operator (I/O around :mod:`airflow_provider_kbatch.pipeline.memo`).

* :func:`lookup`: the index entry of a key, *still valid*: the producing run's ledger still holds
  a succeeded record of the stage with that output digest, its workspace record binds the output
  to the same claim (same uid), and the claim mounted now is that very claim (same uid). An entry
  that fails a check is dropped from the index and the stage runs (a miss).
* :func:`record_hit`: the hit in this run's ledger (stage record and the output's location).
* :func:`store`: a succeeded stage's entry (bounded index, compare-and-swap).
"""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any

from airflow_provider_kbatch.engine import ledger, storage
from airflow_provider_kbatch.engine.waiter import Log
from airflow_provider_kbatch.pipeline import memo as rules
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline.workspace import output_subpath, read_workspace
from airflow_provider_kbatch.spec.names import JobIdentity


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _index(hook: Any, namespace: str, identity: JobIdentity, mutate: Any) -> dict[str, str]:
    return dict(
        hook.update_config_map_cas(
            namespace,
            rules.index_name(identity.dag_id, identity.task_id, identity.map_index),
            mutate,
            labels=rules.index_labels(identity.dag_id, identity.task_id),
        )
    )


def _invalid(hook: Any, namespace: str, identity: JobIdentity, entry: rules.CacheEntry) -> str | None:
    """Why ``entry`` cannot be reused now (``None``: it can)."""
    try:
        data = ledger.read(hook, namespace, identity.dag_id, entry.run_id)
    except records.LedgerError as err:
        return f"the ledger of run {entry.run_id!r} cannot be read: {err}"
    record = records.read_stage(data, records.stage_key(identity.task_id, identity.map_index))
    if record is None or record.state != "succeeded":
        return f"run {entry.run_id!r} has no succeeded record of the stage any more"
    if entry.output is None:
        return None
    if record.output is None or record.output.manifest_digest != entry.output.get("manifest_digest"):
        return f"run {entry.run_id!r} no longer records output {entry.output.get('manifest_digest')}"
    workspace = read_workspace(data)
    location = workspace.outputs.get(str(entry.output.get("name"))) if workspace else None
    if workspace is None or workspace.state != "active" or location is None:
        return f"run {entry.run_id!r} no longer binds the output to its workspace"
    if (location.claim, location.claim_uid) != (entry.claim, entry.claim_uid):
        return f"the output of run {entry.run_id!r} was written to another claim"
    found = hook.get_pvc(namespace, entry.claim) if entry.claim else None
    uid = (found or {}).get("metadata", {}).get("uid")
    if uid is None or uid != entry.claim_uid:
        return f"claim {entry.claim!r} (uid {entry.claim_uid}) is gone or was recreated"
    return None


def lookup(hook: Any, namespace: str, identity: JobIdentity, key: str, log: Log) -> rules.CacheEntry | None:
    """The valid entry of ``key``, or ``None`` (a miss)."""
    now = _now()
    config_map = hook.get_config_map(
        namespace, rules.index_name(identity.dag_id, identity.task_id, identity.map_index)
    )
    entry = rules.find((config_map or {}).get("data"), key, now=now)
    if entry is None:
        log.info("cache miss for %s: no entry for key %s", identity.task_id, key)
        return None
    if entry.run_id == identity.run_id:
        return None  # this run's own entry: the run already went through the normal path
    problem = _invalid(hook, namespace, identity, entry)
    if problem is not None:
        log.info(
            "cache miss for %s: the entry of run %s is stale (%s); dropping it",
            identity.task_id,
            entry.run_id,
            problem,
        )
        _index(hook, namespace, identity, lambda d: rules.drop(d, key, now=now))
        return None
    return entry


def record_hit(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    entry: rules.CacheEntry,
    *,
    spec_hash: str,
    log: Log,
) -> records.StageOutput | None:
    """Record the hit in this run's ledger and the index; the reused output (if any)."""
    now = _now()
    mutate = partial(
        rules.record_cache_hit,
        key=records.stage_key(identity.task_id, identity.map_index),
        entry=entry,
        try_number=identity.try_number,
        spec_hash=spec_hash,
        at=now,
        task_id=identity.task_id,
        map_index=identity.map_index,
    )
    ledger.write(hook, namespace, identity.dag_id, identity.run_id, lambda d: mutate(d))
    _index(hook, namespace, identity, lambda d: rules.touch(d, entry.key, now=now))
    log.info(
        "cache hit for %s: reusing the output of run %s (%s); no Job is created",
        identity.task_id,
        entry.run_id,
        (entry.output or {}).get("manifest_digest"),
    )
    if entry.output is None:
        return None
    return storage.record_output_location(
        hook, namespace, identity, str(entry.output["name"]), subpath=entry.subpath
    )


def store(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    key: str,
    *,
    completions: int,
    spec_hash: str,
    output_name: str | None,
) -> rules.CacheEntry | None:
    """Add the succeeded stage's entry to the index (not for a hit: it is there already)."""
    data = ledger.read(hook, namespace, identity.dag_id, identity.run_id)
    stage_key = records.stage_key(identity.task_id, identity.map_index)
    if rules.cache_hit_of(data, stage_key) is not None:
        return None
    record = records.read_stage(data, stage_key)
    if record is None or record.state != "succeeded":
        return None
    output = None
    claim = claim_uid = subpath = None
    if output_name is not None:
        workspace = read_workspace(data)
        location = workspace.outputs.get(output_name) if workspace else None
        if record.output is None or location is None:
            return None
        output = {
            "name": record.output.name,
            "manifest_digest": record.output.manifest_digest,
            "bytes": record.output.bytes,
            "records": record.output.records,
            "contract": dict(record.output.contract) if record.output.contract else None,
        }
        claim, claim_uid = location.claim, location.claim_uid
        subpath = location.subpath or output_subpath(identity.run_id, output_name)
    now = _now()
    entry = rules.CacheEntry(
        key=key,
        run_id=identity.run_id,
        task_id=identity.task_id,
        map_index=identity.map_index,
        spec_hash=spec_hash,
        completions=completions,
        output=output,
        claim=claim,
        claim_uid=claim_uid,
        subpath=subpath,
        created_at=now,
        last_used=now,
    )
    _index(hook, namespace, identity, lambda d: rules.put_entry(d, entry, now=now))
    return entry
