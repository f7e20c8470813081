"""The run's workspace record in the ledger (key :data:`.ledger_schema.WORKSPACE_KEY`; pure):
its typed view and its merge rules, re-appliable like the stage records'."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.ledger_schema import SCHEMA_VERSION as SCHEMA_VERSION
from airflow_provider_kbatch.pipeline.ledger_schema import WORKSPACE_KEY as WORKSPACE_KEY
from airflow_provider_kbatch.pipeline.ledger_schema import LedgerError, dump


@dataclass(frozen=True)
class OutputLocation:
    """Where a stage's output was written: the claim and its uid at that time."""

    stage: str
    manifest_digest: str
    claim: str
    claim_uid: str | None
    at: str | None
    # claim-relative directory of the data when it is not this run's own output directory (a
    # memoized stage's cache hit reuses an earlier run's output on the same shared claim)
    subpath: str | None = None


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
                    subpath=v.get("subpath"),
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
    out[WORKSPACE_KEY] = dump(raw)
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
    data: Mapping[str, str],
    *,
    output: str,
    stage: str,
    manifest_digest: str,
    at: str,
    subpath: str | None = None,
) -> dict[str, str]:
    """Bind output ``output`` of ``stage`` (digest) to the run's current claim and uid (and to
    ``subpath`` on it when the data is not in the run's own output directory: a cache hit).

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
    if subpath is not None:
        location["subpath"] = subpath
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
