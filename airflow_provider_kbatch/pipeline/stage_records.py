"""Stage records of the run ledger (pure): reading them, and their merge rules.

Every update is ``(data, key, ...) -> new data``: it never mutates its input, touches only its key
and is idempotent, so the compare-and-swap loop can re-apply it to a fresh copy (the rules are in
:mod:`airflow_provider_kbatch.pipeline.records`). Each written record is bounded by
:func:`.ledger_budget.compact_record`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from airflow_provider_kbatch.pipeline import indexcodec
from airflow_provider_kbatch.pipeline.ledger_budget import compact_record
from airflow_provider_kbatch.pipeline.ledger_schema import (
    KEY_OK,
    KEY_PREFIX,
    MAX_KEY_CHARS,
    MAX_REASON_CHARS,
    MAX_RESULT_BYTES,
    MAX_RESULTS,
    RECORD_BUDGET_BYTES,
    SCHEMA_VERSION,
    STATES,
    LedgerError,
    StageOutput,
    StageRecord,
    State,
    dump,
    load_record,
    parse_record,
)
from airflow_provider_kbatch.spec.intervals import IndexSet


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
    raw = load_record(text)
    if raw.get("spec_hash") != spec_hash:
        return IndexSet()
    return indexcodec.decode(raw.get("completed"))


def stage_output(data: Mapping[str, str] | None, key: str) -> StageOutput | None:
    """The recorded output of a *succeeded* stage (what a downstream sensor waits for)."""
    record = read_stage(data, key)
    return record.output if record is not None and record.state == "succeeded" else None


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
    raw = _new_record(task_id, map_index) if text is None else load_record(text)
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
    if not key.startswith(KEY_PREFIX) or not KEY_OK.match(key) or len(key) > MAX_KEY_CHARS:
        raise LedgerError(f"ledger key {key!r}: expected stage_key(task_id, map_index)")
    out = dict(data)
    out[key] = dump(compact_record(raw, budget))
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
        size = len(dump(result))
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
    job_times: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Record the end of a Job: final index sets, reason, results, and the stage's new state.

    ``results`` are the attempt's per-index results: merged into the preview, and counted in the
    attempt's ``results`` (the engine keeps them in full in results ConfigMaps). ``job_times``
    (``created``, ``started``, ``ended``: the Job's own timestamps) go into the attempt as
    ``job_created`` / ``job_started`` / ``job_ended``, first value kept: the queue wait and the
    run of the attempt once the Job is garbage-collected.

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
    for name, value in (job_times or {}).items():
        if name in JOB_TIMES and isinstance(value, str) and value:
            attempt.setdefault(f"job_{name}", value)
    if attempt is raw["attempts"][-1]:
        _transition(raw, "succeeded" if succeeded else "failed", at)
    if output is not None:
        raw["output"] = _output(output)
    return _put(data, key, raw)


JOB_TIMES = ("created", "started", "ended")


def record_inputs(
    data: Mapping[str, str],
    key: str,
    *,
    inputs: Mapping[str, Mapping[str, Any]],
    at: str,
    task_id: str | None = None,
    map_index: int | None = None,
) -> dict[str, str]:
    """Record what the stage consumes (lineage): ``inputs`` is input name -> ``{"stage",
    "manifest_digest"}``, as the hand-off check resolved them before the Job was submitted.

    Creates the record (``pending``) when the stage has none yet. Each input keeps the value of
    the latest check (a retry that consumes a re-produced output records its new digest), and its
    ``at`` changes only with the digest, so re-applying the update changes nothing.
    """
    raw = _get(data, key, task_id, map_index)
    if key not in data:
        _transition(raw, "pending", at)
    recorded = dict(raw.get("inputs") or {})
    for name, item in inputs.items():
        stage, digest = item.get("stage"), item.get("manifest_digest")
        if not isinstance(stage, str) or not stage or not isinstance(digest, str) or not digest:
            raise LedgerError(
                f"inputs: {name!r} needs a producing stage and a manifest digest, found {item!r}"
            )
        before = recorded.get(name) or {}
        if before.get("stage") == stage and before.get("manifest_digest") == digest:
            continue
        recorded[str(name)] = {"stage": stage, "manifest_digest": digest, "at": at}
    raw["inputs"] = recorded
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
