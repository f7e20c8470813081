"""The run ledger: record schemas and pure merge rules (the I/O and the CAS loop live in engine/hooks).

This module is the ledger's one import path (``from airflow_provider_kbatch.pipeline import
records as rules``) and its documentation; the code is cut by concern, every name re-exported here:
:mod:`.ledger_schema` (constants, errors, the typed records, parse and dump),
:mod:`.ledger_names` (name, labels, annotations, selector, identity check, stage keys),
:mod:`.stage_records` (the stage records' merge rules), :mod:`.workspace_record` (the workspace
record) and :mod:`.ledger_budget` (the size budget and :func:`shrink`).

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
                   "started", "ended", "reason",
                   "job_created", "job_started", "job_ended"}],  (the Job's own times, at its end;
                                                     last MAX_ATTEMPTS; "attempts_dropped": n)
     "spec_hash": str|null,
     "completed": indexes, "failed": indexes,       (logical; under the current spec_hash only)
     "output": {"name", "manifest_digest", "bytes", "records", "contract"} | null,
     "inputs": {"<input>": {"stage", "manifest_digest", "at"}},  (what it consumed: lineage;
                                                     absent: no inputs, or an older provider)
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
MAX_ATTEMPTS; past the budget its earlier attempts' index sets, then the latest attempt's
completed / failed sets, then its results preview are dropped: :func:`compact_record`). The whole map stays under :data:`LEDGER_BUDGET_BYTES`: every write passes its result
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

from airflow_provider_kbatch.pipeline.ledger_budget import (
    SHRINK_STEPS,
    check_size,
    compact_record,
    ledger_size,
    shrink,
)
from airflow_provider_kbatch.pipeline.ledger_names import (
    check_ledger,
    ledger_annotations,
    ledger_config_map,
    ledger_data,
    ledger_labels,
    ledger_name,
    ledger_selector,
    stage_key,
    stage_keys,
)
from airflow_provider_kbatch.pipeline.ledger_schema import (
    ANNOTATION_SCHEMA_VERSION,
    FINAL_STATES,
    KEY_PREFIX,
    LABEL_LEDGER,
    LEDGER_BUDGET_BYTES,
    MAX_ATTEMPTS,
    MAX_OBJECT_BYTES,
    MAX_REASON_CHARS,
    MAX_RESULT_BYTES,
    MAX_RESULTS,
    MAX_TRANSITIONS,
    RECORD_BUDGET_BYTES,
    SCHEMA_VERSION,
    STATES,
    WORKSPACE_KEY,
    Attempt,
    LedgerError,
    LedgerIdentityError,
    LedgerTooLarge,
    StageInput,
    StageOutput,
    StageRecord,
    State,
    dump,
    load_record,
    parse_record,
)
from airflow_provider_kbatch.pipeline.stage_records import (
    completed_for_resume,
    read_stage,
    record_attempt_finished,
    record_attempt_started,
    record_inputs,
    record_output,
    record_pending,
    record_progress,
    stage_output,
)
from airflow_provider_kbatch.pipeline.workspace_record import (
    OutputLocation,
    WorkspaceRecord,
    read_workspace,
    record_output_location,
    record_workspace,
    record_workspace_deleted,
)

__all__ = [
    "ANNOTATION_SCHEMA_VERSION",
    "FINAL_STATES",
    "KEY_PREFIX",
    "LABEL_LEDGER",
    "LEDGER_BUDGET_BYTES",
    "MAX_ATTEMPTS",
    "MAX_OBJECT_BYTES",
    "MAX_REASON_CHARS",
    "MAX_RESULTS",
    "MAX_RESULT_BYTES",
    "MAX_TRANSITIONS",
    "RECORD_BUDGET_BYTES",
    "SCHEMA_VERSION",
    "SHRINK_STEPS",
    "STATES",
    "WORKSPACE_KEY",
    "Attempt",
    "LedgerError",
    "LedgerIdentityError",
    "LedgerTooLarge",
    "OutputLocation",
    "StageInput",
    "StageOutput",
    "StageRecord",
    "State",
    "WorkspaceRecord",
    "check_ledger",
    "check_size",
    "compact_record",
    "completed_for_resume",
    "dump",
    "ledger_annotations",
    "ledger_config_map",
    "ledger_data",
    "ledger_labels",
    "ledger_name",
    "ledger_selector",
    "ledger_size",
    "load_record",
    "parse_record",
    "read_stage",
    "read_workspace",
    "record_attempt_finished",
    "record_attempt_started",
    "record_inputs",
    "record_output",
    "record_output_location",
    "record_pending",
    "record_progress",
    "record_workspace",
    "record_workspace_deleted",
    "shrink",
    "stage_key",
    "stage_keys",
    "stage_output",
]
