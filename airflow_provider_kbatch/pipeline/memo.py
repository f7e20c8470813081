"""Memoized stages (pure): the cache key, the bounded cache index, and a cache hit's ledger record.

A stage with ``cache=True`` is looked up before its Job is submitted. The **key**
(:func:`cache_key`) is the sha256 of the stage's spec hash *before* it is wired to a run's
workspace (image, command, args, env, completions, ... -- :func:`spec.manifest.spec_hash`), its
ports (output name, inputs and their producers, contracts), the manifest digest of every input
(as the run ledger resolved them), the shared claim, the map index and ``cache_version``. A
changed input, image, argument or version is another key: a miss.

The **index** is one ConfigMap per DAG, task and map index (:func:`index_name`, label
``kbatch.io/cache=true``) holding at most :data:`MAX_ENTRIES` entries under the key ``entries``
(a JSON list), least recently used dropped first, and none older than :data:`MAX_AGE_SECONDS`:
a few KiB, far from the 1 MiB object limit that Argo's memoization ConfigMaps reach
(argo-workflows#5847). An entry points to the run that produced the output (its ledger holds the
record) and where the data is: a claim-relative directory on the *shared* claim
(``Workspace(claim_name=...)``), with that claim's uid.

A **hit** records, in this run's ledger, a succeeded stage whose only attempt has no Job
(``job: "cache-hit:<run key>"``, ``cache: {hit, key, source_run_id}``) and the output of the
earlier run; the workspace record binds the output to the earlier run's directory
(``subpath``), which consumers then mount read-only. Nothing is copied.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_kbatch.pipeline import stage_records
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.ledger_budget import compact_record
from airflow_provider_kbatch.pipeline.ledger_schema import RECORD_BUDGET_BYTES, dump, load_record
from airflow_provider_kbatch.pipeline.workspace import Ports, Workspace
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.intervals import IndexSet

MAX_ENTRIES = 16
MAX_AGE_SECONDS = 30 * 86400
ENTRIES_KEY = "entries"
LABEL_CACHE = "kbatch.io/cache"
KEY_VERSION = 1


def index_name(dag_id: str, task_id: str, map_index: int = -1) -> str:
    """``kbatch-cache-<dag slug>-<h10>``, h10 hashing dag id, task id and map index."""
    return names.run_object_name("cache", dag_id, f"{task_id}\0{map_index}", slug_chars=38)


def index_labels(dag_id: str, task_id: str) -> dict[str, str]:
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_DAG_ID: names.sanitize_label_value(dag_id),
        names.LABEL_TASK_ID: names.sanitize_label_value(task_id),
        LABEL_CACHE: "true",
    }


def _contract(c: Contract | None) -> Any:
    return None if c is None else {"name": c.name, "version": c.version, "fields": dict(c.fields or {})}


def cache_key(
    *,
    dag_id: str,
    task_id: str,
    map_index: int,
    spec_hash: str,
    ports: Ports,
    input_digests: Mapping[str, str],
    claim: str | None,
    cache_version: str | None,
) -> str:
    """``sha256:<hex>`` of everything that decides a stage's output (see the module)."""
    payload = {
        "v": KEY_VERSION,
        "dag_id": dag_id,
        "task_id": task_id,
        "map_index": map_index,
        "spec_hash": spec_hash,
        "output": ports.output,
        "inputs": {k: v for k, v in sorted(ports.inputs.items())},
        "produces": _contract(ports.produces),
        "accepts": {k: _contract(v) for k, v in sorted((ports.accepts or {}).items())},
        "input_digests": dict(sorted(input_digests.items())),
        "claim": claim,
        "cache_version": cache_version,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def cache_workspace_problem(
    cache: bool, workspace: Workspace | None, output: str | None
) -> KbatchSpecError | None:
    """A cached stage with an output must keep it on a shared claim (``claim_name=``): a claim
    created per run is another volume in the next run (and deleted on success by default)."""
    if cache and output is not None and (workspace is None or workspace.claim_name is None):
        return KbatchSpecError(
            "cache",
            "with output= needs a shared workspace, Workspace(claim_name=...): the output of a claim "
            "created per run is not reachable from another run",
            "Use Workspace(claim_name='<existing claim>') or drop cache=True.",
        )
    return None


@dataclass(frozen=True)
class CacheEntry:
    key: str
    run_id: str
    task_id: str
    map_index: int
    spec_hash: str  # the producing run's (wired) spec hash, for the record
    completions: int
    output: Mapping[str, Any] | None  # {name, manifest_digest, bytes, records, contract}
    claim: str | None
    claim_uid: str | None
    subpath: str | None  # claim-relative directory of the data
    created_at: str
    last_used: str
    hits: int = 0


def read_entries(data: Mapping[str, str] | None) -> list[CacheEntry]:
    """The index's entries, most recently used first (malformed entries are skipped)."""
    try:
        raw = json.loads((data or {}).get(ENTRIES_KEY) or "[]")
    except ValueError:
        return []
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(CacheEntry(**item))
        except TypeError:
            continue
    return sorted(out, key=lambda e: e.last_used, reverse=True)


def _age_seconds(at: str, now: str) -> float:
    def parse(v: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))

    try:
        return (parse(now) - parse(at)).total_seconds()
    except ValueError:
        return float("inf")


def _put(data: Mapping[str, str], entries: list[CacheEntry], now: str, max_entries: int) -> dict[str, str]:
    fresh = [e for e in entries if _age_seconds(e.created_at, now) <= MAX_AGE_SECONDS]
    kept = sorted(fresh, key=lambda e: e.last_used, reverse=True)[:max_entries]
    out = dict(data)
    out[ENTRIES_KEY] = json.dumps([asdict(e) for e in kept], sort_keys=True, separators=(",", ":"))
    return out


def put_entry(
    data: Mapping[str, str], entry: CacheEntry, *, now: str, max_entries: int = MAX_ENTRIES
) -> dict[str, str]:
    """The index with ``entry`` (replacing one of the same key), bounded (LRU, max age)."""
    others = [e for e in read_entries(data) if e.key != entry.key]
    return _put(data, [entry, *others], now, max_entries)


def touch(data: Mapping[str, str], key: str, *, now: str, max_entries: int = MAX_ENTRIES) -> dict[str, str]:
    """Mark the entry of ``key`` used now (one more hit)."""
    entries = [
        CacheEntry(**{**asdict(e), "last_used": now, "hits": e.hits + 1}) if e.key == key else e
        for e in read_entries(data)
    ]
    return _put(data, entries, now, max_entries)


def drop(data: Mapping[str, str], key: str, *, now: str) -> dict[str, str]:
    """The index without the entry of ``key`` (its data is gone)."""
    return _put(data, [e for e in read_entries(data) if e.key != key], now, MAX_ENTRIES)


def find(data: Mapping[str, str] | None, key: str, *, now: str) -> CacheEntry | None:
    for entry in read_entries(data):
        if entry.key == key and _age_seconds(entry.created_at, now) <= MAX_AGE_SECONDS:
            return entry
    return None


def hit_job(run_id: str) -> str:
    """The ``job`` of a cache hit's attempt: no Job ran."""
    return f"cache-hit:{names.run_key(run_id)}"


def record_cache_hit(
    data: Mapping[str, str],
    key: str,
    *,
    entry: CacheEntry,
    try_number: int,
    spec_hash: str,
    at: str,
    task_id: str,
    map_index: int,
) -> dict[str, str]:
    """The stage succeeded by reusing ``entry``: one attempt without a Job, every index completed,
    the earlier run's output, and ``cache: {hit: true, key, source_run_id}`` on the attempt."""
    job = hit_job(entry.run_id)
    every = IndexSet.full(entry.completions)
    data = stage_records.record_attempt_started(
        data,
        key,
        try_number=try_number,
        job=job,
        uid=None,
        spec_hash=spec_hash,
        index_map=every,
        at=at,
        task_id=task_id,
        map_index=map_index,
    )
    data = stage_records.record_attempt_finished(
        data,
        key,
        job=job,
        succeeded=True,
        at=at,
        completed=every,
        reason=f"cache hit: reused the output of run {entry.run_id!r}",
        output=entry.output,
    )
    raw = load_record(data[key])
    raw["attempts"][-1]["cache"] = {"hit": True, "key": entry.key, "source_run_id": entry.run_id}
    out = dict(data)
    out[key] = dump(compact_record(raw, RECORD_BUDGET_BYTES))
    return out


def cache_hit_of(data: Mapping[str, str] | None, key: str) -> dict[str, Any] | None:
    """The ``cache`` entry of the stage's latest attempt, if it was a cache hit."""
    text = (data or {}).get(key)
    if text is None:
        return None
    attempts = load_record(text).get("attempts") or []
    cache = attempts[-1].get("cache") if attempts else None
    return cache if isinstance(cache, dict) else None
