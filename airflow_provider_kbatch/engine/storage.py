"""The workspace seen from the operator: check inputs, find or create the run's claim, record it.

Thin I/O around the pure rules in :mod:`airflow_provider_kbatch.pipeline.workspace` (naming,
layout, pod wiring), :mod:`airflow_provider_kbatch.pipeline.records` (the ledger's workspace
record) and :mod:`airflow_provider_kbatch.pipeline.handoff` (the input and contract check). Every
ledger read and write goes through :mod:`airflow_provider_kbatch.engine.ledger` (the hook's
compare-and-swap loop, the ledger's identity check and its size budget); a ledger that cannot be
used raises :class:`WorkspaceError`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.waiter import Log
from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import handoff
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec

MAX_GENERATIONS_PER_EXECUTE = 5


class WorkspaceError(KbatchError):
    """The run's workspace cannot be used (missing existing claim, a claim of another run, ...).
    Final: a retry finds the same claims."""

    final = True


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_ledger(hook: Any, namespace: str, dag_id: str, run_id: str) -> dict[str, str]:
    """The run ledger's data, identity checked (:func:`airflow_provider_kbatch.engine.ledger.read`)."""
    try:
        return ledger.read(hook, namespace, dag_id, run_id)
    except rules.LedgerError as err:
        raise WorkspaceError(str(err)) from err


def _update(hook: Any, namespace: str, identity: JobIdentity, mutate: Any) -> dict[str, str]:
    """Every workspace-record write: identity checked and size bounded like the stage records'."""
    try:
        return ledger.write(hook, namespace, identity.dag_id, identity.run_id, mutate)
    except rules.LedgerError as err:
        raise WorkspaceError(str(err)) from err


@dataclass(frozen=True)
class PreparedStage:
    spec: StageSpec  # with the workspace's volume, mounts, env and init container
    claim: str
    inputs: Mapping[str, handoff.ResolvedInput]


def _provider_claim(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    workspace: ws.Workspace,
    record: ws.WorkspaceRecord | None,
    log: Log,
) -> tuple[str, int, dict[str, Any]]:
    """Find the run's claim, or create it (idempotent: a 409 means another stage did)."""
    from airflow_provider_kbatch.errors import AlreadyExists

    generation = ws.candidate_generation(record)
    for _ in range(MAX_GENERATIONS_PER_EXECUTE):
        name = ws.claim_name(identity.dag_id, identity.run_id, generation)
        found = hook.get_pvc(namespace, name)
        verdict = ws.judge_claim(
            found, name=name, record=record, dag_id=identity.dag_id, run_id=identity.run_id
        )
        if verdict == "create":
            body = ws.claim_manifest(
                workspace, dag_id=identity.dag_id, run_id=identity.run_id, generation=generation
            )
            try:
                found = hook.create_pvc(namespace, body)
                log.info("created workspace claim %s/%s (%s)", namespace, name, workspace.size)
            except AlreadyExists:
                found = hook.get_pvc(namespace, name)
                verdict = ws.judge_claim(
                    found, name=name, record=None, dag_id=identity.dag_id, run_id=identity.run_id
                )
        if verdict == "gone":
            log.warning(
                "workspace claim %s/%s was deleted or is going; the run moves to generation %d",
                namespace,
                name,
                generation + 1,
            )
            generation += 1
            continue
        assert found is not None
        return name, generation, found
    raise WorkspaceError(
        f"no usable workspace claim for run {identity.run_id!r} after {MAX_GENERATIONS_PER_EXECUTE} generations"
    )


def prepare_stage(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    *,
    workspace: ws.Workspace,
    ports: ws.Ports,
    spec: StageSpec,
    declared: Mapping[str, Contract | None],
    logical_date: str | None,
    log: Log,
) -> PreparedStage:
    """Check the inputs against the ledger, make sure the run's claim exists and is recorded,
    and return the stage spec wired to it. Raises :class:`handoff.InputCheckError` before any
    write when an input is missing or incompatible."""
    data = read_ledger(hook, namespace, identity.dag_id, identity.run_id)
    record = ws.read_workspace(data)
    check = partial(
        handoff.check_inputs,
        stage=identity.task_id,
        run_id=identity.run_id,
        inputs=ports.inputs,
        accepts=ports.accepts,
        declared=declared,
    )
    checked = check(data, workspace=record) if ports.inputs else {}  # an input that is gone fails here
    try:
        if workspace.claim_name is not None:
            name, generation = workspace.claim_name, 0
            found = hook.get_pvc(namespace, name)
            problem = ws.existing_claim_problem(found, name)
            if problem:
                raise WorkspaceError(problem)
        else:
            name, generation, found = _provider_claim(hook, namespace, identity, workspace, record, log)
    except ValueError as err:
        raise WorkspaceError(str(err)) from None
    uid = found.get("metadata", {}).get("uid")
    mutate = partial(
        ws.record_workspace,
        claim=name,
        generation=generation,
        uid=uid,
        provisioned=workspace.provisioned,
        retention=workspace.retention if workspace.provisioned else None,
        run_id=identity.run_id,
        logical_date=logical_date,
        at=_now(),
    )
    lineage = partial(_record_inputs, identity=identity, at=_now())
    data = _update(hook, namespace, identity, lambda d: lineage(mutate(d), checked))
    record = ws.read_workspace(data)
    if record is None or record.claim != name:
        raise WorkspaceError(
            f"another stage moved run {identity.run_id!r} to workspace claim "
            f"{record.claim if record else None!r} while this one chose {name!r}; retry the task"
        )
    resolved = check(data, workspace=record) if ports.inputs else {}
    if _digests(resolved) != _digests(checked):  # a producer re-ran in between: what is consumed now
        _update(hook, namespace, identity, lambda d: lineage(d, resolved))
    for item in resolved.values():
        log.info(
            "input %s: output of stage %s, %s (%s bytes, %s records, contract %s)",
            item.name,
            item.stage,
            item.manifest_digest,
            item.bytes,
            item.records,
            item.contract,
        )
    elsewhere = {n: loc.subpath for n, loc in record.outputs.items() if n in resolved and loc.subpath}
    wired = ws.wire_stage(spec, workspace, ports, identity, name, input_subpaths=elsewhere)
    return PreparedStage(wired, name, resolved)


def _digests(inputs: Mapping[str, handoff.ResolvedInput]) -> dict[str, tuple[str, str]]:
    return {n: (i.stage, i.manifest_digest) for n, i in inputs.items()}


def _record_inputs(
    data: dict[str, str], inputs: Mapping[str, handoff.ResolvedInput], *, identity: JobIdentity, at: str
) -> dict[str, str]:
    """The stage's consumed inputs into its ledger record (lineage; nothing when it has none)."""
    if not inputs:
        return data
    return rules.record_inputs(
        data,
        rules.stage_key(identity.task_id, identity.map_index),
        inputs={n: {"stage": i.stage, "manifest_digest": i.manifest_digest} for n, i in inputs.items()},
        at=at,
        task_id=identity.task_id,
        map_index=identity.map_index,
    )


def record_output_location(
    hook: Any, namespace: str, identity: JobIdentity, output: str, subpath: str | None = None
) -> rules.StageOutput | None:
    """Bind the stage's recorded output to the run's claim (after the stage succeeded; at
    ``subpath`` for a cache hit's reused data)."""
    data = read_ledger(hook, namespace, identity.dag_id, identity.run_id)
    recorded = rules.stage_output(data, rules.stage_key(identity.task_id, identity.map_index))
    if recorded is None or recorded.name != output:
        return None
    mutate = partial(
        ws.record_output_location,
        output=output,
        stage=identity.task_id,
        manifest_digest=recorded.manifest_digest,
        at=_now(),
        subpath=subpath,
    )
    _update(hook, namespace, identity, lambda d: mutate(d))
    return recorded


def delete_workspace(
    hook: Any, namespace: str, identity: JobIdentity, workspace: ws.Workspace, log: Log
) -> str | None:
    """Delete the run's provider-created claim and record it. Returns the claim deleted, if any."""
    if not workspace.provisioned:
        log.info("workspace claim %s is not the provider's: nothing deleted", workspace.claim_name)
        return None
    record = ws.read_workspace(read_ledger(hook, namespace, identity.dag_id, identity.run_id))
    if record is None or record.state == "deleted":
        log.info("run %s has no active workspace claim: nothing to delete", identity.run_id)
        return None
    found = hook.get_pvc(namespace, record.claim)
    if found is not None and not ws.claim_belongs_to(found, identity.dag_id, identity.run_id):
        raise WorkspaceError(
            f"claim {record.claim!r} does not belong to run {identity.run_id!r}: not deleting it"
        )
    # record first: a stage that starts now must not pick a claim that is going away
    mutate = partial(ws.record_workspace_deleted, claim=record.claim, at=_now())
    _update(hook, namespace, identity, lambda d: mutate(d))
    if found is not None:
        hook.delete_pvc(namespace, record.claim)
        log.info("deleted workspace claim %s/%s", namespace, record.claim)
    return record.claim
