"""The boundary check before a consumer's Job is submitted (pure: ledger data in, verdict out).

For each input of a stage, :func:`check_inputs` reads the run ledger and insists that

1. a stage of *this* run produced it: the producing stage (named, or found by output name) has a
   ``succeeded`` record with an output of that name and a manifest digest;
2. the data is still where the consumer will mount it: the workspace record binds the output to
   the claim (and uid) the run uses now, which was not deleted since;
3. the recorded contract is compatible with the one the stage accepts: same name and major
   version; when the producing task declares that very contract (same name and version), every
   accepted field with the same type.

Every problem is reported at once, each naming the consuming stage, the input, the producing
stage, and for contracts the field, what was expected and what was found. Nothing here writes:
upstream data and its record are never modified. The same contract rules run again inside the
pod, against the manifest itself (``runtime.verify_input``), with the checksums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline.contracts import Contract, incompatibilities
from airflow_provider_kbatch.pipeline.workspace import WorkspaceRecord


class InputCheckError(KbatchError, ValueError):
    """An input of a stage cannot be used; ``.problems`` lists every reason. Final: a retry
    reads the same ledger."""

    final = True

    def __init__(self, stage: str, problems: list[str]) -> None:
        self.stage = stage
        self.problems = tuple(problems)
        head = f"stage {stage!r}: {len(problems)} input problem(s), nothing was submitted:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


@dataclass(frozen=True)
class ResolvedInput:
    """An input found in the ledger: who produced it and what it is."""

    name: str
    stage: str
    manifest_digest: str
    bytes: int | None
    records: int | None
    contract: Mapping[str, Any] | None


def producers_by_output(data: Mapping[str, str]) -> dict[str, list[str]]:
    """Output name -> task ids of succeeded stages of the run that recorded it."""
    found: dict[str, list[str]] = {}
    for key in rules.stage_keys(data):
        record = rules.read_stage(data, key)
        if record is not None and record.state == "succeeded" and record.output is not None:
            found.setdefault(record.output.name, []).append(record.task_id or key)
    return found


def _contract_problems(
    where: str,
    recorded: Mapping[str, Any] | None,
    accepted: Contract,
    declared: Contract | None,
) -> list[str]:
    if recorded is None:
        return [f"{where}: contract: expected {accepted}, found no contract on the recorded output"]
    header: dict[str, Any] = {"name": recorded.get("name"), "version": recorded.get("version"), "fields": {}}
    try:
        errors = incompatibilities(header, Contract(accepted.name, accepted.version))
    except ValueError as exc:
        return [f"{where}: contract: expected {accepted}, found a malformed contract ({exc})"]
    if errors:
        return [f"{where}: {e}" for e in errors]
    # The ledger keeps (name, version); the fields are those the producing task declares for
    # exactly that contract (what its pods validated every record against).
    if declared is not None and (declared.name, declared.version) == (header["name"], header["version"]):
        return [f"{where}: {e}" for e in incompatibilities(declared, accepted)]
    return []


def _location_problem(
    where: str, name: str, producer: str, digest: str, workspace: WorkspaceRecord | None
) -> str | None:
    if workspace is None:
        return f"{where}: the run has no workspace record, so the output's location is unknown; clear stage {producer!r}"
    if workspace.state == "deleted":
        return (
            f"{where}: the run's workspace claim {workspace.claim!r} was deleted at {workspace.deleted_at} "
            f"(retention {workspace.retention!r}); the data is gone: clear stage {producer!r} so it runs again"
        )
    location = workspace.outputs.get(name)
    if location is None or location.manifest_digest != digest:
        return (
            f"{where}: output {digest} is not bound to the workspace (its producer did not finish "
            f"recording it); clear stage {producer!r} so it records it again"
        )
    if location.claim != workspace.claim or location.claim_uid != workspace.uid:
        return (
            f"{where}: it was written to claim {location.claim!r} (uid {location.claim_uid}), which no longer "
            f"exists; the run now uses {workspace.claim!r} (uid {workspace.uid}): clear stage {producer!r} "
            "so it runs again"
        )
    return None


def check_inputs(
    data: Mapping[str, str],
    *,
    stage: str,
    run_id: str,
    inputs: Mapping[str, str | None],
    accepts: Mapping[str, Contract] | None = None,
    declared: Mapping[str, Contract | None] | None = None,
    workspace: WorkspaceRecord | None = None,
    check_location: bool = True,
) -> dict[str, ResolvedInput]:
    """Resolve every input of ``stage`` from the run ledger's ``data`` or raise :class:`InputCheckError`.

    ``inputs``: input name -> producing task id (``None``: the succeeded stage of the run that
    recorded an output of that name). ``accepts``: input name -> accepted contract. ``declared``:
    producing task id -> the contract it declares (``produces=``), used for the field check.
    ``workspace``: the run's workspace record (checked when ``check_location``).
    """
    accepts = accepts or {}
    declared = declared or {}
    problems: list[str] = []
    resolved: dict[str, ResolvedInput] = {}
    by_output = producers_by_output(data) if any(p is None for p in inputs.values()) else {}
    for name, producer in inputs.items():
        if producer is None:
            candidates = by_output.get(name, [])
            if len(candidates) != 1:
                found = f"stages {', '.join(map(repr, candidates))} both did" if candidates else "none did"
                problems.append(
                    f"input {name!r}: expected one stage of run {run_id!r} to have recorded an output named "
                    f"{name!r}, {found}; name it with inputs={{{name!r}: '<task id>'}} or run its producer first"
                )
                continue
            producer = candidates[0]
        where = f"input {name!r} (output of stage {producer!r})"
        record = rules.read_stage(data, rules.stage_key(producer))
        if record is None:
            problems.append(
                f"{where}: stage {producer!r} has no record in run {run_id!r}: it must succeed first"
            )
            continue
        if record.state != "succeeded":
            problems.append(f"{where}: stage {producer!r} is {record.state} in run {run_id!r}, not succeeded")
            continue
        output = record.output
        if output is None or output.name != name:
            found = f"output {output.name!r}" if output is not None else "no output"
            problems.append(
                f"{where}: stage {producer!r} succeeded but recorded {found}; it must declare output={name!r} "
                "and finalize its manifest (runtime.OutputWriter)"
            )
            continue
        stage_problems: list[str] = []
        if name in accepts:
            stage_problems += _contract_problems(
                where, output.contract, accepts[name], declared.get(producer)
            )
        if check_location:
            location = _location_problem(where, name, producer, output.manifest_digest, workspace)
            stage_problems += [location] if location else []
        if stage_problems:
            problems += stage_problems
            continue
        resolved[name] = ResolvedInput(
            name=name,
            stage=producer,
            manifest_digest=output.manifest_digest,
            bytes=output.bytes,
            records=output.records,
            contract=output.contract,
        )
    if problems:
        raise InputCheckError(stage, problems)
    return resolved
