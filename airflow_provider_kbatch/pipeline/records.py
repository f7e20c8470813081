"""The run ledger: record schema and pure merge rules (the I/O and the CAS loop live in hooks).

One ConfigMap per DAG run (:func:`ledger_name`, :func:`ledger_labels`) holds one JSON *stage
record* per task instance under ``data[stage_key(task_id, map_index)]``. Every update is a pure
function ``(data, key, ...) -> new data``: it never mutates its input and touches only ``key``,
so the hook's compare-and-swap loop (read, apply, replace with ``resourceVersion``, on 409 re-read
and re-apply) can re-apply it to a fresh copy. Re-applying an update that already landed changes
nothing (transitions are appended only when the state changes, attempts are keyed by Job name
and uid, index sets are merged by union, ``ended`` keeps its first value).

Stage record, schema version 1 (JSON, compact, sorted keys)::

    {"schema_version": 1, "task_id": str|null, "map_index": int|null,
     "state": "pending"|"running"|"succeeded"|"failed",
     "transitions": [[state, at], ...],             (last MAX_TRANSITIONS; "transitions_dropped": n)
     "attempts": [{"try_number", "job", "uid", "spec_hash", "index_map", "completed", "failed",
                   "counts": {"index_map", "completed", "failed"},
                   "started", "ended", "reason"}],  (last MAX_ATTEMPTS; "attempts_dropped": n)
     "spec_hash": str|null,
     "completed": indexes, "failed": indexes,       (logical; under the current spec_hash only)
     "output": {"name", "manifest_digest", "bytes", "records", "contract"} | null,
     "results": {"<index>": {...}},                 (lowest MAX_RESULTS indexes, each <= MAX_RESULT_BYTES)
     "results_truncated": bool, "updated_at": str|null}

Index sets are interval strings (``"0-97,99"``), or ``"z:<base64 zlib bitmap>"`` when that is
shorter than a long interval string (:mod:`.indexcodec`); an attempt's sets may be elided
(``null``, counts kept) to keep a record under :data:`RECORD_BUDGET_BYTES`. The stage-level
``completed`` is what resume trusts: it is reset when an attempt starts under a different spec
hash, because the outputs of that earlier spec may have been overwritten.

Secrets: the ledger stores exactly the values passed to these functions (Job names, uids, spec
hashes, index sets, timestamps, reasons, manifest digests and sizes, and the pods' small results)
and is readable by anyone who can read ConfigMaps in the namespace. Never pass a secret, and never
put one in a pod's termination message (results are copied here and to XCom).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import indexcodec
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.intervals import IndexSet

SCHEMA_VERSION = 1
KEY_PREFIX = "stage."
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

    The stage moves to ``succeeded``/``failed`` only when this is its latest attempt (a late
    report from an older Job does not override a newer one). ``ended`` keeps its first value.
    ``output`` is as for :func:`record_output`.
    """
    raw, attempt = _with_progress(data, key, job, uid, completed, failed, results)
    if attempt.get("ended") is None:
        attempt["ended"] = at
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
    if raw.get("results"):
        raw["results"] = {}
        raw["results_truncated"] = True
    return raw


def ledger_size(data: Mapping[str, str]) -> int:
    """Bytes the ``data`` map occupies (keys and values, UTF-8)."""
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in data.items())


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


def shrink(data: Mapping[str, str], budget: int = LEDGER_BUDGET_BYTES) -> dict[str, str]:
    """Compact the largest records harder until ``data`` fits ``budget`` (keeps what resume needs:
    state, spec hash, stage-level sets, the latest attempt's ``index_map``, output)."""
    out = dict(data)
    for key in sorted(stage_keys(out), key=lambda k: len(out[k]), reverse=True):
        if ledger_size(out) <= budget:
            break
        out = _put(out, key, _load(out[key]), budget=0)
    check_size(out, budget)
    return out
