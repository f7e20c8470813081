"""The run ledger's schema: its constants, errors and typed records, and the stage record's
parse and dump (pure; the layout is described in :mod:`airflow_provider_kbatch.pipeline.records`).

The bottom of the ledger's modules: :mod:`.ledger_names`, :mod:`.stage_records`,
:mod:`.workspace_record` and :mod:`.ledger_budget` build on it, and ``records`` re-exports them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import indexcodec
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

KEY_OK = re.compile(r"^[-._a-zA-Z0-9]+$")  # what a ConfigMap key may hold
MAX_KEY_CHARS = 253


class LedgerError(KbatchError, ValueError):
    """A ledger record is malformed, newer than this provider, or an update does not apply.
    Final: the record stays as it is."""

    final = True


class LedgerTooLarge(LedgerError):
    """The ledger's data would not fit in one ConfigMap."""


class LedgerIdentityError(LedgerError):
    """The ConfigMap under a run's ledger name belongs to another run (or a newer provider)."""


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
    # the Job's own times (creationTimestamp, status.startTime, its end), recorded when it ended;
    # None: the Job never started, or an older provider. ``started``/``ended`` are the operator's.
    job_created: str | None = None
    job_started: str | None = None
    job_ended: str | None = None


@dataclass(frozen=True)
class StageOutput:
    name: str
    manifest_digest: str
    bytes: int | None
    records: int | None
    contract: Mapping[str, Any] | None


@dataclass(frozen=True)
class StageInput:
    """An input the stage consumed: the output ``name`` of stage ``stage``, with the manifest
    digest it had when the stage's inputs were checked (lineage)."""

    name: str
    stage: str
    manifest_digest: str
    at: str | None


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
    inputs: Mapping[str, StageInput] = field(default_factory=dict)  # input name -> what was consumed

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
        job_created=raw.get("job_created"),
        job_started=raw.get("job_started"),
        job_ended=raw.get("job_ended"),
    )


def _parse_output(raw: Mapping[str, Any]) -> StageOutput:
    return StageOutput(
        name=raw["name"],
        manifest_digest=raw["manifest_digest"],
        bytes=raw.get("bytes"),
        records=raw.get("records"),
        contract=raw.get("contract"),
    )


def _parse_inputs(raw: Any) -> dict[str, StageInput]:
    return {
        str(name): StageInput(str(name), str(item["stage"]), str(item["manifest_digest"]), item.get("at"))
        for name, item in (raw or {}).items()
    }


def parse_record(text: str) -> StageRecord:
    """Parse one stage record (the JSON string in the ConfigMap). ``LedgerError`` when malformed."""
    raw = load_record(text)
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
            inputs=_parse_inputs(raw.get("inputs")),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LedgerError(f"stage record: malformed ({exc!r})") from None


def load_record(text: str) -> dict[str, Any]:
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


def dump(raw: Mapping[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
