"""The run ledger: record schemas and pure merge rules (the I/O and the CAS loop live in engine/hooks).

One ConfigMap per DAG run (:func:`ledger_name`, :func:`ledger_labels`) holds one JSON *stage
record* per task instance under ``data[stage_key(task_id, map_index)]`` and the run's *workspace
record* under ``data[WORKSPACE_KEY]``. Every update is a pure function ``(data, key, ...) -> new
data``: it never mutates its input and touches only its key, so the hook's compare-and-swap loop
(read, apply, replace with ``resourceVersion``, on 409 re-read and re-apply) can re-apply it to a
fresh copy. Re-applying an update that already landed changes nothing (transitions are appended
only when the state changes, attempts are keyed by Job name and uid, index sets are merged by
union, ``ended`` keeps its first value).

Identity: the ConfigMap's annotations (:func:`ledger_annotations`) carry the full dag id, run id
and :data:`SCHEMA_VERSION`; they are written when the ledger is created (and added to a ledger an
older provider created without them). Whoever finds a ledger by name checks them
(:func:`check_ledger`, :func:`ledger_data`): the name holds only a hash of the ids, and a
collision must never mix two runs.

Both record kinds share one :data:`SCHEMA_VERSION`. Stage record (JSON, compact, sorted keys)::

    {"schema_version": 1, "task_id": str|null, "map_index": int|null,
     "state": "pending"|"running"|"succeeded"|"failed",
     "transitions": [[state, at], ...],             (last MAX_TRANSITIONS; "transitions_dropped": n)
     "attempts": [{"try_number", "job", "uid", "spec_hash", "index_map", "completed", "failed",
                   "counts": {"index_map", "completed", "failed"},
                   "results": n,                    (indexes with a stored result; absent: older provider)
                   "started", "ended", "reason"}],  (last MAX_ATTEMPTS; "attempts_dropped": n)
     "spec_hash": str|null,
     "completed": indexes, "failed": indexes,       (logical; under the current spec_hash only)
     "output": {"name", "manifest_digest", "bytes", "records", "contract"} | null,
     "results": {"<index>": {...}},                 (preview: lowest MAX_RESULTS, each <= MAX_RESULT_BYTES;
                                                     all of them: engine.results.read_results)
     "results_truncated": bool, "updated_at": str|null}

Workspace record (:func:`read_workspace`)::

    {"schema_version": 1, "claim", "generation", "uid", "provisioned", "retention",
     "state": "active"|"deleted", "run_id", "logical_date", "updated_at", "deleted_at",
     "outputs": {"<output>": {"stage", "manifest_digest", "claim", "claim_uid", "at"}}}

Index sets are interval strings (``"0-97,99"``), or ``"z:<base64 zlib bitmap>"`` when that is
shorter than a long interval string (:mod:`.indexcodec`). The stage-level ``completed`` is what
resume trusts: it is reset when an attempt starts under a different spec hash, because the
outputs of that earlier spec may have been overwritten.

Size. One record stays under :data:`RECORD_BUDGET_BYTES` (history capped at MAX_TRANSITIONS /
MAX_ATTEMPTS; past the budget its earlier attempts' index sets, then its results preview are
dropped). The whole map stays under :data:`LEDGER_BUDGET_BYTES`: every write passes its result
through :func:`shrink`, which takes the *oldest history first*: it visits the stage records from
the least recently updated to the most recently updated one (the record being written comes
last), takes these steps on each in turn, and stops as soon as the data fits:

1. the index sets of earlier attempts (``null``; their ``counts`` stay);
2. earlier attempts that ended, and every transition but the last (``attempts_dropped`` /
   ``transitions_dropped`` count them);
3. the results preview (``results: {}``, ``results_truncated: true``; the results ConfigMaps
   still hold every result);
4. the latest attempt's ``completed`` / ``failed`` sets (its ``counts`` stay).

So the newest records stay intact while older ones are compacted. Never dropped (resume, hand-off
and lineage need them): state, spec hash, stage-level sets, the
latest attempt's Job, uid, index map and counts, the output, the workspace record. When even that
does not fit, the write fails with :class:`LedgerTooLarge` instead of the API server's 422.

Secrets: the ledger stores exactly the values passed to these functions (Job names, uids, spec
hashes, index sets, timestamps, reasons, manifest digests and sizes, and the pods' small results)
and is readable by anyone who can read ConfigMaps in the namespace. Never pass a secret, and never
put one in a pod's termination message (results are copied here and to XCom).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import indexcodec
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.intervals import IndexSet

SCHEMA_VERSION = 1  # of both record kinds (stage records and the workspace record)
KEY_PREFIX = "stage."
WORKSPACE_KEY = "workspace"  # the workspace record's key
LABEL_LEDGER = "kbatch.io/ledger"
ANNOTATION_SCHEMA_VERSION = "kbatch.io/ledger-schema-version"
MAX_OBJECT_BYTES = 1024 * 1024  # the API server's limit for one object
LEDGER_BUDGET_BYTES = 900 * 1024  # data budget, leaving room for metadata
RECORD_BUDGET_BYTES = 64 * 1024
MAX_TRANSITIONS = 32
MAX_ATTEMPTS = 20
MAX_RESULTS = 100
MAX_RESULT_BYTES = 512
MAX_REASON_CHARS = 512

State = Literal["pending", "running", "succeeded", "failed"]
STATES: tuple[State, ...] = ("pending", "running", "succeeded", "failed")
FINAL_STATES: tuple[State, ...] = ("succeeded", "failed")

_KEY_OK = re.compile(r"^[-._a-zA-Z0-9]+$")
_NOT_KEY_CHAR = re.compile(r"[^-._a-zA-Z0-9]+")
_NOT_DNS_CHAR = re.compile(r"[^a-z0-9]+")
_MAX_KEY = 253


class LedgerError(KbatchError, ValueError):
    """A ledger record is malformed, newer than this provider, or an update does not apply.
    Final: the record stays as it is."""

    final = True


class LedgerTooLarge(LedgerError):
    """The ledger's data would not fit in one ConfigMap."""


class LedgerIdentityError(LedgerError):
    """The ConfigMap under a run's ledger name belongs to another run (or a newer provider)."""


# --------------------------------------------------------------------------- naming


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def ledger_name(dag_id: str, run_id: str) -> str:
    """``kbatch-ledger-<dag slug>-<h10>``: a DNS label (<= 63 chars), one per (dag_id, run_id)."""
    slug = _NOT_DNS_CHAR.sub("-", dag_id.lower()).strip("-")[:38].rstrip("-")
    h10 = _sha(dag_id, run_id)[:10]
    return f"kbatch-ledger-{slug}-{h10}" if slug else f"kbatch-ledger-{h10}"


def ledger_labels(dag_id: str, run_id: str) -> dict[str, str]:
    """Labels of the ledger ConfigMap; dag id and run key are the same values Jobs carry."""
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_DAG_ID: names.sanitize_label_value(dag_id),
        names.LABEL_RUN_KEY: names.run_key(run_id),
        LABEL_LEDGER: "true",
    }


def ledger_annotations(dag_id: str, run_id: str) -> dict[str, str]:
    """Full, unsanitised dag id and run id (check them before trusting a ledger found by name)."""
    return {
        names.ANNOTATION_DAG_ID: dag_id,
        names.ANNOTATION_RUN_ID: run_id,
        ANNOTATION_SCHEMA_VERSION: str(SCHEMA_VERSION),
    }


def ledger_selector(dag_id: str | None = None, run_id: str | None = None) -> str:
    """Label selector for ledgers, optionally of one DAG and/or one run."""
    labels = {LABEL_LEDGER: "true"}
    if dag_id is not None:
        labels[names.LABEL_DAG_ID] = names.sanitize_label_value(dag_id)
    if run_id is not None:
        labels[names.LABEL_RUN_KEY] = names.run_key(run_id)
    return ",".join(f"{k}={v}" for k, v in labels.items())


def ledger_config_map(dag_id: str, run_id: str, namespace: str | None = None) -> dict[str, Any]:
    """An empty ledger ConfigMap body (camelCase dict) for the hook to create."""
    metadata: dict[str, Any] = {
        "name": ledger_name(dag_id, run_id),
        "labels": ledger_labels(dag_id, run_id),
        "annotations": ledger_annotations(dag_id, run_id),
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {}}


def check_ledger(config_map: Mapping[str, Any] | None, dag_id: str, run_id: str) -> None:
    """Raise :class:`LedgerIdentityError` when ``config_map`` (found by :func:`ledger_name`) is not
    the ledger of ``dag_id``/``run_id``: its annotations name another DAG or run (the name holds a
    40-bit hash of both), or a newer schema version. A missing ConfigMap passes, and so does one
    an older provider created without the annotations (they are added on the next write)."""
    metadata = (config_map or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    name = metadata.get("name") or ledger_name(dag_id, run_id)
    found = (annotations.get(names.ANNOTATION_DAG_ID), annotations.get(names.ANNOTATION_RUN_ID))
    if found != (None, None) and found != (dag_id, run_id):
        raise LedgerIdentityError(
            f"ledger ConfigMap {name!r} belongs to DAG {found[0]!r} run {found[1]!r}, not to DAG "
            f"{dag_id!r} run {run_id!r} (both hash to that name; its {names.ANNOTATION_DAG_ID} / "
            f"{names.ANNOTATION_RUN_ID} annotations differ); nothing was read from it or written to it. "
            "Run under another run id, or delete that ConfigMap if the other run's records are no longer needed"
        )
    version = annotations.get(ANNOTATION_SCHEMA_VERSION)
    if version is not None and (not str(version).isdigit() or int(version) > SCHEMA_VERSION):
        raise LedgerIdentityError(
            f"ledger ConfigMap {name!r}: {ANNOTATION_SCHEMA_VERSION} {version!r} is newer than this provider "
            f"understands ({SCHEMA_VERSION}); upgrade airflow-provider-kbatch on every worker"
        )


def ledger_data(config_map: Mapping[str, Any] | None, dag_id: str, run_id: str) -> dict[str, str]:
    """The data of this run's ledger as read by name (``{}`` when missing), identity checked."""
    check_ledger(config_map, dag_id, run_id)
    return dict((config_map or {}).get("data") or {})


def stage_key(task_id: str, map_index: int = -1) -> str:
    """``stage.<task_id>[.<map_index>]``, a valid ConfigMap key.

    A task id with characters a key cannot hold, or too long, becomes
    ``<sanitised prefix>-<sha256[:8]>``. Records also store ``task_id``/``map_index``, and the
    merge functions refuse to mix two task instances under one key.
    """
    suffix = f".{map_index}" if map_index >= 0 else ""
    room = _MAX_KEY - len(KEY_PREFIX) - len(suffix)
    body = task_id
    if not task_id or not _KEY_OK.match(task_id) or len(task_id) > room:
        body = _NOT_KEY_CHAR.sub("-", task_id)[: room - 9].strip("-.") + "-" + _sha(task_id)[:8]
    return f"{KEY_PREFIX}{body}{suffix}"


def stage_keys(data: Mapping[str, str]) -> list[str]:
    """Every stage key of a ledger's data."""
    return sorted(k for k in data if k.startswith(KEY_PREFIX))


# --------------------------------------------------------------------------- typed view


@dataclass(frozen=True)
class Attempt:
    """One Job run for a stage. Index sets are logical; ``None`` when elided for size."""

    try_number: int
    job: str
    uid: str | None
    spec_hash: str
    index_map: IndexSet | None
    completed: IndexSet | None
    failed: IndexSet | None
    counts: Mapping[str, int]
    started: str | None
    ended: str | None
    reason: str | None
    results: int | None = None  # indexes with a stored result; None: recorded by an older provider


@dataclass(frozen=True)
class StageOutput:
    name: str
    manifest_digest: str
    bytes: int | None
    records: int | None
    contract: Mapping[str, Any] | None


@dataclass(frozen=True)
class StageRecord:
    schema_version: int
    task_id: str | None
    map_index: int | None
    state: State
    transitions: tuple[tuple[State, str], ...]
    attempts: tuple[Attempt, ...]
    spec_hash: str | None
    completed: IndexSet
    failed: IndexSet
    output: StageOutput | None
    results: Mapping[int, Mapping[str, Any]]
    results_truncated: bool
    updated_at: str | None
    attempts_dropped: int = 0  # earlier attempts no longer in ``attempts`` (history cap, size budget)

    @property
    def latest_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


def _parse_attempt(raw: Mapping[str, Any]) -> Attempt:
    return Attempt(
        try_number=int(raw["try_number"]),
        job=str(raw["job"]),
        uid=raw.get("uid"),
        spec_hash=str(raw["spec_hash"]),
        index_map=None if raw.get("index_map") is None else indexcodec.decode(raw["index_map"]),
        completed=None if raw.get("completed") is None else indexcodec.decode(raw["completed"]),
        failed=None if raw.get("failed") is None else indexcodec.decode(raw["failed"]),
        counts=dict(raw.get("counts") or {}),
        started=raw.get("started"),
        ended=raw.get("ended"),
        reason=raw.get("reason"),
        results=None if raw.get("results") is None else int(raw["results"]),
    )


def _parse_output(raw: Mapping[str, Any]) -> StageOutput:
    return StageOutput(
        name=raw["name"],
        manifest_digest=raw["manifest_digest"],
        bytes=raw.get("bytes"),
        records=raw.get("records"),
        contract=raw.get("contract"),
    )


def parse_record(text: str) -> StageRecord:
    """Parse one stage record (the JSON string in the ConfigMap). ``LedgerError`` when malformed."""
    raw = _load(text)
    try:
        output = raw.get("output")
        return StageRecord(
            schema_version=raw["schema_version"],
            task_id=raw.get("task_id"),
            map_index=raw.get("map_index"),
            state=raw["state"],
            transitions=tuple((t[0], t[1]) for t in raw.get("transitions", [])),
            attempts=tuple(_parse_attempt(a) for a in raw.get("attempts", [])),
            spec_hash=raw.get("spec_hash"),
            completed=indexcodec.decode(raw.get("completed")),
            failed=indexcodec.decode(raw.get("failed")),
            output=_parse_output(output) if output else None,
            results={int(k): v for k, v in (raw.get("results") or {}).items()},
            results_truncated=bool(raw.get("results_truncated")),
            updated_at=raw.get("updated_at"),
            attempts_dropped=int(raw.get("attempts_dropped") or 0),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LedgerError(f"stage record: malformed ({exc!r})") from None


def read_stage(data: Mapping[str, str] | None, key: str) -> StageRecord | None:
    """The typed stage record under ``key``, or ``None`` when the stage has no record yet."""
    text = (data or {}).get(key)
    return None if text is None else parse_record(text)


def completed_for_resume(data: Mapping[str, str] | None, key: str, spec_hash: str) -> IndexSet:
    """Logical indexes already completed under this very ``spec_hash`` (empty otherwise).

    A retry submits only the other indexes. Completions recorded under another spec hash are
    never trusted: the stage's command, image or inputs changed, so its outputs must be redone.
    """
    text = (data or {}).get(key)
    if text is None:
        return IndexSet()
    raw = _load(text)
    if raw.get("spec_hash") != spec_hash:
        return IndexSet()
    return indexcodec.decode(raw.get("completed"))


def stage_output(data: Mapping[str, str] | None, key: str) -> StageOutput | None:
    """The recorded output of a *succeeded* stage (what a downstream sensor waits for)."""
    record = read_stage(data, key)
    return record.output if record is not None and record.state == "succeeded" else None


# --------------------------------------------------------------------------- merge rules


def _load(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise LedgerError(f"stage record: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise LedgerError("stage record: expected a JSON object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise LedgerError(f"stage record: schema_version: expected a positive integer, found {version!r}")
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"stage record: schema_version {version} is newer than this provider understands "
            f"({SCHEMA_VERSION}); upgrade airflow-provider-kbatch on every worker"
        )
    if raw.get("state") not in STATES:
        raise LedgerError(
            f"stage record: state: expected one of {', '.join(STATES)}, found {raw.get('state')!r}"
        )
    return raw


def _dump(raw: Mapping[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _new_record(task_id: str | None, map_index: int | None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "task_id": task_id,
        "map_index": map_index,
        "state": "pending",
        "transitions": [],
        "transitions_dropped": 0,
        "attempts": [],
        "attempts_dropped": 0,
        "spec_hash": None,
        "completed": "",
        "failed": "",
        "output": None,
        "results": {},
        "results_truncated": False,
        "updated_at": None,
    }


def _get(
    data: Mapping[str, str], key: str, task_id: str | None = None, map_index: int | None = None
) -> dict[str, Any]:
    text = data.get(key)
    raw = _new_record(task_id, map_index) if text is None else _load(text)
    for field, given in (("task_id", task_id), ("map_index", map_index)):
        if given is None:
            continue
        if raw.get(field) is None:
            raw[field] = given
        elif raw[field] != given:
            raise LedgerError(
                f"ledger key {key!r} holds {field} {raw[field]!r}, not {given!r}: two task instances map "
                "to the same key"
            )
    return raw


def _put(
    data: Mapping[str, str], key: str, raw: dict[str, Any], budget: int = RECORD_BUDGET_BYTES
) -> dict[str, str]:
    if not key.startswith(KEY_PREFIX) or not _KEY_OK.match(key) or len(key) > _MAX_KEY:
        raise LedgerError(f"ledger key {key!r}: expected stage_key(task_id, map_index)")
    out = dict(data)
    out[key] = _dump(_compact(raw, budget))
    return out


def _transition(raw: dict[str, Any], state: State, at: str) -> None:
    if state not in STATES:
        raise LedgerError(f"state: expected one of {', '.join(STATES)}, found {state!r}")
    transitions = raw.setdefault("transitions", [])
    if not transitions or transitions[-1][0] != state:
        transitions.append([state, at])
    raw["state"] = state
    raw["updated_at"] = at


def _as_set(value: IndexSet | str | None) -> IndexSet:
    if value is None:
        return IndexSet()
    if isinstance(value, IndexSet):
        return value
    return indexcodec.decode(value)


def _find_attempt(raw: Mapping[str, Any], job: str, uid: str | None) -> dict[str, Any] | None:
    for attempt in reversed(raw.get("attempts", [])):
        if attempt["job"] == job and (uid is None or attempt.get("uid") in (None, uid)):
            return cast(dict[str, Any], attempt)
    return None


def _set_indexes(attempt: dict[str, Any], field: str, value: IndexSet) -> None:
    attempt[field] = indexcodec.encode(value)
    attempt.setdefault("counts", {})[field] = len(value)


def record_pending(
    data: Mapping[str, str], key: str, *, at: str, task_id: str | None = None, map_index: int | None = None
) -> dict[str, str]:
    """Create the stage's record in state ``pending`` (no-op when it already exists)."""
    if key in data:
        _get(data, key, task_id, map_index)  # identity check only
        return dict(data)
    raw = _new_record(task_id, map_index)
    _transition(raw, "pending", at)
    return _put(data, key, raw)


def record_attempt_started(
    data: Mapping[str, str],
    key: str,
    *,
    try_number: int,
    job: str,
    uid: str | None,
    spec_hash: str,
    index_map: IndexSet | str,
    at: str,
    task_id: str | None = None,
    map_index: int | None = None,
) -> dict[str, str]:
    """Record that Job ``job`` (uid ``uid``) runs the logical indexes ``index_map`` of the stage.

    Moves the stage to ``running``. A new ``spec_hash`` resets the stage-level completed/failed
    sets (earlier completions no longer count for resume). Re-applying it, or adopting the same
    Job from a later Airflow try, updates the existing attempt (``try_number`` becomes the latest
    owner's) instead of adding one; an attempt that already ended is left as it is.
    """
    raw = _get(data, key, task_id, map_index)
    attempt = _find_attempt(raw, job, uid)
    if attempt is not None:
        if attempt.get("uid") is None and uid is not None:
            attempt["uid"] = uid
        attempt["try_number"] = max(int(attempt["try_number"]), try_number)
        if attempt.get("ended") is None:
            _transition(raw, "running", at)
        return _put(data, key, raw)
    if raw.get("spec_hash") != spec_hash:
        raw["spec_hash"] = spec_hash
        raw["completed"] = ""
        raw["failed"] = ""
    attempt = {
        "try_number": try_number,
        "job": job,
        "uid": uid,
        "spec_hash": spec_hash,
        "started": at,
        "ended": None,
        "reason": None,
        "results": 0,
    }
    for field, value in (
        ("index_map", _as_set(index_map)),
        ("completed", IndexSet()),
        ("failed", IndexSet()),
    ):
        _set_indexes(attempt, field, value)
    raw.setdefault("attempts", []).append(attempt)
    _transition(raw, "running", at)
    return _put(data, key, raw)


def _merge_progress(
    raw: dict[str, Any], attempt: dict[str, Any], completed: IndexSet, failed: IndexSet
) -> None:
    """Union the attempt's sets; fold them into the stage sets if the attempt is of its spec."""
    done = (
        (_as_set(attempt.get("completed")) | completed) if attempt.get("completed") is not None else completed
    )
    bad = (_as_set(attempt.get("failed")) | failed) if attempt.get("failed") is not None else failed
    _set_indexes(attempt, "completed", done)
    _set_indexes(attempt, "failed", bad - done)
    if attempt["spec_hash"] == raw.get("spec_hash"):
        stage_done = _as_set(raw.get("completed")) | done
        raw["completed"] = indexcodec.encode(stage_done)
        raw["failed"] = indexcodec.encode((_as_set(raw.get("failed")) | bad) - stage_done)


def _merge_results(raw: dict[str, Any], results: Mapping[int, Mapping[str, Any]] | None) -> None:
    if not results:
        return
    merged = {int(k): v for k, v in (raw.get("results") or {}).items()}
    for index, result in results.items():
        size = len(_dump(result))
        merged[int(index)] = dict(result) if size <= MAX_RESULT_BYTES else {"_truncated": True, "bytes": size}
    if len(merged) > MAX_RESULTS:
        raw["results_truncated"] = True
    kept = sorted(merged)[:MAX_RESULTS]  # the lowest indexes: the same subset whatever the order of arrival
    raw["results"] = {str(i): merged[i] for i in kept}


def _with_progress(
    data: Mapping[str, str],
    key: str,
    job: str,
    uid: str | None,
    completed: IndexSet | str,
    failed: IndexSet | str,
    results: Mapping[int, Mapping[str, Any]] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage record under ``key`` and Job ``job``'s attempt in it, with the index sets and
    results merged in (``LedgerError`` when the attempt was never started)."""
    raw = _get(data, key)
    attempt = _find_attempt(raw, job, uid)
    if attempt is None:
        raise LedgerError(f"ledger key {key!r}: no attempt for Job {job!r}; record_attempt_started first")
    _merge_progress(raw, attempt, _as_set(completed), _as_set(failed))
    _merge_results(raw, results)
    return raw, attempt


def record_progress(
    data: Mapping[str, str],
    key: str,
    *,
    job: str,
    uid: str | None = None,
    completed: IndexSet | str = "",
    failed: IndexSet | str = "",
    results: Mapping[int, Mapping[str, Any]] | None = None,
    at: str | None = None,
) -> dict[str, str]:
    """Merge the *logical* completed/failed indexes (and per-index results) seen so far for a Job.

    Sets only grow (union), so a late or repeated report is harmless. Convert Job-local sets
    first (``spec.intervals.map_local(outcome.completed, index_map)``).
    """
    raw, _ = _with_progress(data, key, job, uid, completed, failed, results)
    if at is not None:
        raw["updated_at"] = at
    return _put(data, key, raw)


def record_attempt_finished(
    data: Mapping[str, str],
    key: str,
    *,
    job: str,
    uid: str | None = None,
    succeeded: bool,
    at: str,
    completed: IndexSet | str = "",
    failed: IndexSet | str = "",
    reason: str | None = None,
    results: Mapping[int, Mapping[str, Any]] | None = None,
    output: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Record the end of a Job: final index sets, reason, results, and the stage's new state.

    ``results`` are the attempt's per-index results: merged into the preview, and counted in the
    attempt's ``results`` (the engine keeps them in full in results ConfigMaps).

    The stage moves to ``succeeded``/``failed`` only when this is its latest attempt (a late
    report from an older Job does not override a newer one). ``ended`` keeps its first value.
    ``output`` is as for :func:`record_output`.
    """
    raw, attempt = _with_progress(data, key, job, uid, completed, failed, results)
    if attempt.get("ended") is None:
        attempt["ended"] = at
    if results or "results" in attempt:
        attempt["results"] = max(int(attempt.get("results") or 0), len(results or {}))
    if reason is not None:
        attempt["reason"] = reason[:MAX_REASON_CHARS]
    if attempt is raw["attempts"][-1]:
        _transition(raw, "succeeded" if succeeded else "failed", at)
    if output is not None:
        raw["output"] = _output(output)
    return _put(data, key, raw)


def _output(output: Mapping[str, Any]) -> dict[str, Any]:
    name, digest = output.get("name"), output.get("manifest_digest")
    if (
        not isinstance(name, str)
        or not name
        or not isinstance(digest, str)
        or not digest.startswith("sha256:")
    ):
        raise LedgerError(
            f"output: expected a name and a 'sha256:...' manifest_digest, found {dict(output)!r}"
        )
    contract = output.get("contract")
    return {
        "name": name,
        "manifest_digest": digest,
        "bytes": output.get("bytes"),
        "records": output.get("records"),
        "contract": {"name": contract["name"], "version": contract["version"]} if contract else None,
    }


def record_output(
    data: Mapping[str, str],
    key: str,
    *,
    name: str,
    manifest_digest: str,
    bytes: int | None = None,
    records: int | None = None,
    contract: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Record the stage's published output (contract kept as ``{name, version}``)."""
    raw = _get(data, key)
    raw["output"] = _output(
        {
            "name": name,
            "manifest_digest": manifest_digest,
            "bytes": bytes,
            "records": records,
            "contract": contract,
        }
    )
    return _put(data, key, raw)


# --------------------------------------------------------------------------- the workspace record


@dataclass(frozen=True)
class OutputLocation:
    """Where a stage's output was written: the claim and its uid at that time."""

    stage: str
    manifest_digest: str
    claim: str
    claim_uid: str | None
    at: str | None


@dataclass(frozen=True)
class WorkspaceRecord:
    """The run's workspace as the ledger knows it (key :data:`WORKSPACE_KEY`)."""

    claim: str
    generation: int  # 0 for an existing claim
    uid: str | None
    provisioned: bool
    retention: str | None
    state: Literal["active", "deleted"]
    run_id: str | None
    logical_date: str | None
    updated_at: str | None
    deleted_at: str | None
    outputs: Mapping[str, OutputLocation]


def read_workspace(data: Mapping[str, str] | None) -> WorkspaceRecord | None:
    """The workspace record of a ledger's data, or ``None`` (:class:`LedgerError`, a ``ValueError``,
    when malformed or newer than this provider)."""
    text = (data or {}).get(WORKSPACE_KEY)
    if text is None:
        return None
    raw = _load_workspace(text)
    try:
        return WorkspaceRecord(
            claim=str(raw["claim"]),
            generation=int(raw.get("generation") or 0),
            uid=raw.get("uid"),
            provisioned=bool(raw.get("provisioned")),
            retention=raw.get("retention"),
            state="deleted" if raw.get("state") == "deleted" else "active",
            run_id=raw.get("run_id"),
            logical_date=raw.get("logical_date"),
            updated_at=raw.get("updated_at"),
            deleted_at=raw.get("deleted_at"),
            outputs={
                str(k): OutputLocation(
                    stage=str(v["stage"]),
                    manifest_digest=str(v["manifest_digest"]),
                    claim=str(v["claim"]),
                    claim_uid=v.get("claim_uid"),
                    at=v.get("at"),
                )
                for k, v in (raw.get("outputs") or {}).items()
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"ledger {WORKSPACE_KEY!r} record: malformed ({exc!r})") from None


def _load_workspace(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise LedgerError(f"ledger {WORKSPACE_KEY!r} record: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise LedgerError(f"ledger {WORKSPACE_KEY!r} record: expected a JSON object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {WORKSPACE_KEY!r} record: schema_version {version!r} is not understood by this "
            f"provider ({SCHEMA_VERSION}); upgrade airflow-provider-kbatch on every worker"
        )
    return raw


def _put_workspace(data: Mapping[str, str], raw: Mapping[str, Any]) -> dict[str, str]:
    out = dict(data)
    out[WORKSPACE_KEY] = _dump(raw)
    return out


def record_workspace(
    data: Mapping[str, str],
    *,
    claim: str,
    generation: int,
    uid: str | None,
    provisioned: bool,
    retention: str | None,
    run_id: str,
    logical_date: str | None,
    at: str,
) -> dict[str, str]:
    """Record that the run uses ``claim`` (uid ``uid``). Re-appliable; never goes back to an
    older generation (a concurrent stage that moved on wins). Output locations are kept: those on
    another uid no longer count (:func:`airflow_provider_kbatch.pipeline.handoff.check_inputs`)."""
    text = data.get(WORKSPACE_KEY)
    raw: dict[str, Any] = (
        _load_workspace(text) if text is not None else {"schema_version": SCHEMA_VERSION, "outputs": {}}
    )
    current = int(raw.get("generation") or 0)
    if text is not None and generation < current:
        return dict(data)
    same = raw.get("claim") == claim and raw.get("uid") == uid and raw.get("state") == "active"
    if same and raw.get("logical_date") == logical_date:
        return dict(data)
    raw.update(
        claim=claim,
        generation=generation,
        uid=uid,
        provisioned=provisioned,
        retention=retention,
        state="active",
        run_id=run_id,
        logical_date=logical_date,
        updated_at=at,
        deleted_at=None,
    )
    return _put_workspace(data, raw)


def record_output_location(
    data: Mapping[str, str], *, output: str, stage: str, manifest_digest: str, at: str
) -> dict[str, str]:
    """Bind output ``output`` of ``stage`` (digest) to the run's current claim and uid.

    :class:`LedgerError` (a ``ValueError``) when there is no active workspace, or when another
    stage already wrote an output of that name in this run (two stages must not share an output
    directory).
    """
    text = data.get(WORKSPACE_KEY)
    if text is None:
        raise LedgerError(f"output {output!r} of stage {stage!r}: the run has no workspace record")
    raw = _load_workspace(text)
    if raw.get("state") == "deleted":
        raise LedgerError(
            f"output {output!r} of stage {stage!r}: the run's workspace {raw.get('claim')!r} was deleted"
        )
    outputs = dict(raw.get("outputs") or {})
    previous = outputs.get(output)
    if previous is not None and previous.get("stage") != stage:
        raise LedgerError(
            f"output {output!r} of stage {stage!r}: stage {previous.get('stage')!r} already wrote an output "
            "of that name in this run; give each stage its own output name"
        )
    location = {
        "stage": stage,
        "manifest_digest": manifest_digest,
        "claim": raw.get("claim"),
        "claim_uid": raw.get("uid"),
    }
    if previous is not None and {k: previous.get(k) for k in location} == location:
        return dict(data)
    outputs[output] = {**location, "at": at}
    raw["outputs"] = outputs
    raw["updated_at"] = at
    return _put_workspace(data, raw)


def record_workspace_deleted(data: Mapping[str, str], *, claim: str, at: str) -> dict[str, str]:
    """Mark the run's claim deleted (no-op when the record names another claim or none)."""
    text = data.get(WORKSPACE_KEY)
    if text is None:
        return dict(data)
    raw = _load_workspace(text)
    if raw.get("claim") != claim or raw.get("state") == "deleted":
        return dict(data)
    raw.update(state="deleted", deleted_at=at, updated_at=at)
    return _put_workspace(data, raw)


# --------------------------------------------------------------------------- size


def _size(raw: Mapping[str, Any]) -> int:
    return len(_dump(raw).encode("utf-8"))


def _compact(raw: dict[str, Any], budget: int) -> dict[str, Any]:
    """Bound a record: cap transitions and attempts; past ``budget`` bytes, elide attempt sets
    (oldest attempts first; the latest attempt keeps its ``index_map``), then drop results."""
    for field, cap in (("transitions", MAX_TRANSITIONS), ("attempts", MAX_ATTEMPTS)):
        items = raw.get(field, [])
        if len(items) > cap:
            raw[f"{field}_dropped"] = raw.get(f"{field}_dropped", 0) + len(items) - cap
            raw[field] = items[-cap:]
    if _size(raw) <= budget:
        return raw
    attempts = raw.get("attempts", [])
    steps = [(a, f) for a in attempts[:-1] for f in ("completed", "failed", "index_map")]
    if attempts:
        steps += [(attempts[-1], "failed"), (attempts[-1], "completed")]
    for attempt, field in steps:
        if attempt.get(field) is not None:
            attempt[field] = None
            if _size(raw) <= budget:
                return raw
    _drop_results(raw)
    return raw


def _elide(attempt: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Elide the attempt's non-empty index sets (an empty one is shorter than ``null``)."""
    found = [f for f in fields if attempt.get(f)]
    attempt.update(dict.fromkeys(found))
    return bool(found)


def _elide_earlier_sets(raw: dict[str, Any]) -> bool:
    changed = [_elide(a, ("completed", "failed", "index_map")) for a in raw.get("attempts", [])[:-1]]
    return any(changed)


def _drop_earlier_history(raw: dict[str, Any]) -> bool:
    attempts = raw.get("attempts", [])
    kept = [a for a in attempts[:-1] if a.get("ended") is None] + attempts[-1:]
    transitions = raw.get("transitions", [])
    if len(kept) == len(attempts) and len(transitions) <= 1:
        return False
    raw["attempts_dropped"] = raw.get("attempts_dropped", 0) + len(attempts) - len(kept)
    raw["attempts"] = kept
    raw["transitions_dropped"] = raw.get("transitions_dropped", 0) + max(0, len(transitions) - 1)
    raw["transitions"] = transitions[-1:]
    return True


def _drop_results(raw: dict[str, Any]) -> bool:
    if not raw.get("results"):
        return False
    raw["results"] = {}
    raw["results_truncated"] = True
    return True


def _elide_latest_sets(raw: dict[str, Any]) -> bool:
    return bool(raw.get("attempts")) and _elide(raw["attempts"][-1], ("completed", "failed"))


#: What :func:`shrink` takes, in this order (see the module docstring).
SHRINK_STEPS: tuple[Callable[[dict[str, Any]], bool], ...] = (
    _elide_earlier_sets,
    _drop_earlier_history,
    _drop_results,
    _elide_latest_sets,
)


def _entry_size(key: str, value: str) -> int:
    return len(key.encode("utf-8")) + len(value.encode("utf-8"))


def ledger_size(data: Mapping[str, str]) -> int:
    """Bytes the ``data`` map occupies (keys and values, UTF-8)."""
    return sum(_entry_size(k, v) for k, v in data.items())


def check_size(data: Mapping[str, str], budget: int = LEDGER_BUDGET_BYTES) -> None:
    """Raise :class:`LedgerTooLarge` (naming the largest records) when ``data`` exceeds ``budget``."""
    size = ledger_size(data)
    if size <= budget:
        return
    largest = sorted(data, key=lambda k: len(data[k]), reverse=True)[:3]
    raise LedgerTooLarge(
        f"ledger data is {size} bytes, over the budget of {budget} (object limit {MAX_OBJECT_BYTES}); "
        f"largest records: {', '.join(f'{k} ({len(data[k])} bytes)' for k in largest)}"
    )


def _age(text: str) -> str:
    try:
        return str(json.loads(text).get("updated_at") or "")
    except (ValueError, AttributeError):
        return ""


def shrink(data: Mapping[str, str], budget: int = LEDGER_BUDGET_BYTES) -> dict[str, str]:
    """``data`` within ``budget`` bytes: unchanged when it fits, else with the oldest history taken
    first (the stage records from the least to the most recently updated, :data:`SHRINK_STEPS` in
    turn on each, stopping as soon as it fits). Keeps what resume, hand-off and lineage need;
    raises :class:`LedgerTooLarge` when even that does not fit. Pure and deterministic: every
    ledger write applies it to what its merge rule returned."""
    out = dict(data)
    size = ledger_size(out)
    if size <= budget:
        return out
    keys = sorted(stage_keys(out), key=lambda k: (_age(out[k]), k))
    for key in keys:
        raw = _load(out[key])
        for step in SHRINK_STEPS:
            if not step(raw):
                continue
            text = _dump(raw)
            size += _entry_size(key, text) - _entry_size(key, out[key])
            out[key] = text
            if size <= budget:
                return out
    check_size(out, budget)
    return out
