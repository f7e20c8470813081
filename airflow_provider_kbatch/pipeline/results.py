"""Per-index results: what the task's XCom carries inline, and where every one is kept (pure).

A stage's pod may leave a JSON object of at most 4096 bytes as its termination message
(``runtime.emit_result``); the operator gathers them per *logical* index. A 1,000-index stage
with 2 kB results has 2 MB of them: more than an XCom should carry and more than the run
ledger's ConfigMap can hold. So:

* **XCom** (:func:`xcom_fields`): ``"results"`` holds the lowest indexes, in index order, while
  the canonical JSON of that object stays within :data:`INLINE_BUDGET_BYTES` (48 KiB; each
  result at most :data:`MAX_RESULT_BYTES`, the termination message limit). Next to it,
  ``"results_inline"`` (how many are inline), ``"results_total"`` (how many indexes have a
  result) and ``"results_ref"``: the arguments of
  :func:`airflow_provider_kbatch.engine.results.read_results`, which returns all of them
  (``null`` when there is no result).
* **Results ConfigMaps** (:func:`results_config_maps`): every result of every attempt (Job name +
  uid), in one or more ConfigMaps named ``kbatch-results-<job>-<uid[:8]>-<chunk>``, each holding at
  most :data:`CHUNK_BUDGET_BYTES` of data (under 900 KiB with its metadata). ``data["<logical
  index>"]`` = the result's compact JSON. Labels: the task instance's Job selector labels
  (:func:`~airflow_provider_kbatch.spec.names.identity_selector_labels`) plus
  ``kbatch.io/results=true`` and ``kbatch.io/attempt=<generation>``; annotations: the full
  identity, the Job, its uid and spec hash, ``kbatch.io/results-chunk: "<i>/<n>"``, the schema
  version. Their ``ownerReferences`` name the run's ledger ConfigMap, so the garbage collector
  deletes them with it. ``kubectl get cm -l kbatch.io/results=true,kbatch.io/task-id=<task>``
  lists them.

Which results count (:func:`merge_results`): a resumed attempt runs only some indexes, so the
stage's results are those of every attempt under the stage's current spec hash, a later attempt
winning for an index both reported. Attempts recorded by an older provider (no ``results`` count
in the ledger) left theirs only in the ledger's preview, which then fills the gaps.

Never put a secret in a result: results are copied to XCom, the ledger and these ConfigMaps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_kbatch.pipeline.records import StageRecord
from airflow_provider_kbatch.spec import names

SCHEMA_VERSION = 1
INLINE_BUDGET_BYTES = 48 * 1024
MAX_RESULT_BYTES = 4096  # what a termination message holds
CHUNK_BUDGET_BYTES = 880 * 1024  # data per results ConfigMap; metadata stays well under 20 KiB
NAME_PREFIX = "kbatch-results-"

LABEL_RESULTS = "kbatch.io/results"
ANNOTATION_JOB = "kbatch.io/job"
ANNOTATION_JOB_UID = "kbatch.io/job-uid"
ANNOTATION_CHUNK = "kbatch.io/results-chunk"
ANNOTATION_SCHEMA_VERSION = "kbatch.io/results-schema-version"

Results = Mapping[int, Mapping[str, Any]]


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _identity(dag_id: str, run_id: str, task_id: str, map_index: int) -> names.JobIdentity:
    return names.JobIdentity(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index)


# --------------------------------------------------------------------------- the XCom


def inline_results(results: Results, budget: int = INLINE_BUDGET_BYTES) -> dict[str, dict[str, Any]]:
    """The lowest indexes' results, in order, while their JSON object stays within ``budget``
    bytes; the first result that does not fit (or exceeds :data:`MAX_RESULT_BYTES`) ends it."""
    inline: dict[str, dict[str, Any]] = {}
    size = 2  # "{}"
    for index in sorted(results):
        value = _dump(results[index])
        cost = _bytes(json.dumps(str(index))) + 1 + _bytes(value) + (1 if inline else 0)
        if _bytes(value) > MAX_RESULT_BYTES or size + cost > budget:
            break
        inline[str(index)] = dict(results[index])
        size += cost
    return inline


def results_ref(
    namespace: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> dict[str, Any]:
    """The keyword arguments of :func:`airflow_provider_kbatch.engine.results.read_results`."""
    return {
        "namespace": namespace,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
    }


def xcom_fields(
    results: Results, ref: Mapping[str, Any], budget: int = INLINE_BUDGET_BYTES
) -> dict[str, Any]:
    """``results`` / ``results_inline`` / ``results_total`` / ``results_ref`` of the task's XCom."""
    inline = inline_results(results, budget)
    return {
        "results": inline,
        "results_inline": len(inline),
        "results_total": len(results),
        "results_ref": dict(ref) if results else None,
    }


# --------------------------------------------------------------------------- results ConfigMaps


def config_map_name(job: str, uid: str, chunk: int) -> str:
    """``kbatch-results-<job>-<uid[:8]>-<chunk>`` (a DNS subdomain: Job names are <= 52 chars)."""
    return f"{NAME_PREFIX}{job}-{uid[:8].lower()}-{chunk}"


def results_selector(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Label selector of every results ConfigMap of one task instance."""
    labels = {**names.identity_selector_labels(_identity(dag_id, run_id, task_id, map_index))}
    labels[LABEL_RESULTS] = "true"
    return ",".join(f"{k}={v}" for k, v in labels.items())


def chunk_results(results: Results, budget: int = CHUNK_BUDGET_BYTES) -> list[dict[str, str]]:
    """``results`` as ConfigMap data maps of at most ``budget`` bytes each, in index order
    (deterministic: the same results give the same chunks)."""
    chunks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    size = 0
    for index in sorted(results):
        key, value = str(index), _dump(results[index])
        cost = _bytes(key) + _bytes(value)
        if current and size + cost > budget:
            chunks.append(current)
            current, size = {}, 0
        current[key] = value
        size += cost
    if current:
        chunks.append(current)
    return chunks


def results_config_maps(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    job: str,
    uid: str,
    generation: int,
    spec_hash: str | None,
    results: Results,
    owner: Mapping[str, Any] | None = None,
    budget: int = CHUNK_BUDGET_BYTES,
) -> list[dict[str, Any]]:
    """The results ConfigMaps of one attempt (camelCase bodies). ``owner`` is the ledger ConfigMap
    (its ``metadata.name`` and ``uid``): the garbage collector deletes them with it."""
    identity = _identity(dag_id, run_id, task_id, map_index)
    labels = {
        **names.identity_selector_labels(identity),
        LABEL_RESULTS: "true",
        names.LABEL_ATTEMPT: str(generation),
    }
    chunks = chunk_results(results, budget)
    bodies = []
    for number, data in enumerate(chunks):
        annotations = {
            **{
                k: v
                for k, v in names.identity_annotations(identity).items()
                if k != names.ANNOTATION_TRY_NUMBER
            },
            ANNOTATION_JOB: job,
            ANNOTATION_JOB_UID: uid,
            ANNOTATION_CHUNK: f"{number}/{len(chunks)}",
            ANNOTATION_SCHEMA_VERSION: str(SCHEMA_VERSION),
        }
        if spec_hash is not None:
            annotations[names.ANNOTATION_SPEC_HASH] = spec_hash
        metadata: dict[str, Any] = {
            "name": config_map_name(job, uid, number),
            "labels": labels,
            "annotations": annotations,
        }
        if owner is not None:
            meta = owner.get("metadata") or {}
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"]}
            ]
        bodies.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return bodies


@dataclass(frozen=True)
class StoredResults:
    """The results one attempt (Job ``job``, uid ``uid``) left in its results ConfigMaps."""

    job: str
    uid: str
    generation: int
    spec_hash: str | None
    created: str
    results: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


def _parse_chunk(
    config_map: Mapping[str, Any], identity: names.JobIdentity
) -> tuple[tuple[str, str], StoredResults] | None:
    metadata = config_map.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    found = names.identity_from_annotations({names.ANNOTATION_TRY_NUMBER: "1", **annotations})
    version = str(annotations.get(ANNOTATION_SCHEMA_VERSION, ""))
    if (
        not names.same_task_instance(found, identity)
        or not version.isdigit()
        or int(version) > SCHEMA_VERSION
    ):
        return None  # another task instance's (a label hash collision), or a newer provider's
    job, uid = annotations.get(ANNOTATION_JOB), annotations.get(ANNOTATION_JOB_UID)
    if not job or not uid:
        return None
    results: dict[int, Mapping[str, Any]] = {}
    for key, text in (config_map.get("data") or {}).items():
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if key.isdigit() and isinstance(value, dict):
            results[int(key)] = value
    attempt = str((metadata.get("labels") or {}).get(names.LABEL_ATTEMPT, ""))
    stored = StoredResults(
        job=job,
        uid=uid,
        generation=int(attempt) if attempt.isdigit() else 0,
        spec_hash=annotations.get(names.ANNOTATION_SPEC_HASH),
        created=str(metadata.get("creationTimestamp") or ""),
        results=results,
    )
    return (job, uid), stored


def stored_attempts(
    config_maps: Iterable[Mapping[str, Any]], *, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> list[StoredResults]:
    """The attempts of one task instance found in ``config_maps`` (chunks joined), oldest first
    (by generation, then creation). ConfigMaps whose annotations name another task instance are
    ignored."""
    identity = _identity(dag_id, run_id, task_id, map_index)
    joined: dict[tuple[str, str], StoredResults] = {}
    for config_map in config_maps:
        parsed = _parse_chunk(config_map, identity)
        if parsed is None:
            continue
        key, chunk = parsed
        previous = joined.get(key)
        if previous is None:
            joined[key] = chunk
            continue
        joined[key] = StoredResults(
            job=previous.job,
            uid=previous.uid,
            generation=previous.generation,
            spec_hash=previous.spec_hash or chunk.spec_hash,
            created=min(previous.created, chunk.created),
            results={**previous.results, **chunk.results},
        )
    return sorted(joined.values(), key=lambda s: (s.generation, s.created, s.job, s.uid))


def merge_results(
    attempts: Iterable[StoredResults],
    *,
    spec_hash: str | None = None,
    preview: Results | None = None,
) -> dict[int, dict[str, Any]]:
    """Index -> result over ``attempts`` (oldest first; a later attempt wins), only those of
    ``spec_hash`` when given; ``preview`` fills the indexes none of them reported."""
    merged: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in (preview or {}).items()}
    for attempt in attempts:
        if spec_hash is None or attempt.spec_hash == spec_hash:
            merged.update({int(k): dict(v) for k, v in attempt.results.items()})
    return dict(sorted(merged.items()))


def legacy_preview(record: StageRecord | None) -> Results | None:
    """The ledger's results preview when an attempt under the current spec hash was recorded by an
    older provider (its results were never stored in results ConfigMaps), else ``None``."""
    if record is None:
        return None
    legacy = any(a.results is None and a.spec_hash == record.spec_hash for a in record.attempts)
    return record.results if legacy else None


def has_stored_results(record: StageRecord | None, *, besides: tuple[str, str | None] | None = None) -> bool:
    """Whether the ledger says results ConfigMaps of this stage's current spec may exist (other than
    those of the attempt ``besides`` = (job, uid)): an attempt stored some, or the ledger dropped
    attempts for size and cannot tell."""
    if record is None:
        return False
    if record.attempts_dropped:
        return True
    return any(
        (a.results or 0) > 0 and a.spec_hash == record.spec_hash and (a.job, a.uid) != besides
        for a in record.attempts
    )
