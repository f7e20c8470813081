"""Workspaces: the durable storage a DAG run's stages hand data through (pure).

A workspace is a PersistentVolumeClaim: either one the provider creates for the DAG run
(``Workspace(create=True, ...)``, one claim per run, never shared) or an existing claim the author
names (``Workspace(claim_name="shared")``). Both hold the run under its own sub-path::

    runs/<run key>/outputs/<output>/                  one directory per declared output
    runs/<run key>/checkpoints/<task id>[.<map index>]/<logical index>/   with checkpoint=True

Inside a stage's pod (see :func:`wiring`)::

    /kbatch/out/<output>   read-write   KBATCH_OUTPUT_DIR           (subPath runs/<rk>/outputs/<output>)
    /kbatch/in/<input>     read-only    KBATCH_INPUT_<INPUT>_DIR    (subPath runs/<rk>/outputs/<input>)
    /kbatch/checkpoints    read-write   KBATCH_CHECKPOINT_DIR       (subPath runs/<rk>/checkpoints/<task>)

A stage never sees another run's directory nor another stage's output read-write.

Provider-created claims are named ``kbatch-ws-<dag slug>-<h10 of dag id + run id>-g<generation>``.
The generation starts at 1 and grows when the claim of the run was deleted (retention, or by
hand), so a name is never reused after deletion: a retry finds either the claim its inputs were
written to, or -- recorded in the run ledger (:func:`read_workspace`) -- the fact that it is gone,
and fails fast instead of reading an empty volume (Argo Workflows #11672).

The run ledger's key :data:`WORKSPACE_KEY` records the claim, its uid and generation, and where
each output was written (claim and uid): a consumer checks that its inputs still live on the
claim it mounts. That record's schema and merge rules live with the stage records, under one
schema version, in :mod:`airflow_provider_kbatch.pipeline.workspace_record` (re-exported here).

This module holds the layout and the pod wiring, and is the import path of everything about
workspaces: the author's options (:class:`Workspace`, :class:`Ports`, :func:`ports_problems`) are
in :mod:`.workspace_options`, the provider's claims (:func:`claim_name`, :func:`claim_manifest`,
:func:`judge_claim`, ...) in :mod:`.workspace_claims`, both re-exported here. Everything here is
pure; the I/O is in :mod:`airflow_provider_kbatch.engine.storage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.pipeline.contracts import contract_env
from airflow_provider_kbatch.pipeline.workspace_claims import ANNOTATION_GENERATION as ANNOTATION_GENERATION
from airflow_provider_kbatch.pipeline.workspace_claims import ANNOTATION_RETENTION as ANNOTATION_RETENTION
from airflow_provider_kbatch.pipeline.workspace_claims import LABEL_WORKSPACE as LABEL_WORKSPACE
from airflow_provider_kbatch.pipeline.workspace_claims import ClaimVerdict as ClaimVerdict
from airflow_provider_kbatch.pipeline.workspace_claims import candidate_generation as candidate_generation
from airflow_provider_kbatch.pipeline.workspace_claims import claim_belongs_to as claim_belongs_to
from airflow_provider_kbatch.pipeline.workspace_claims import claim_labels as claim_labels
from airflow_provider_kbatch.pipeline.workspace_claims import claim_manifest as claim_manifest
from airflow_provider_kbatch.pipeline.workspace_claims import claim_name as claim_name
from airflow_provider_kbatch.pipeline.workspace_claims import claim_usable as claim_usable
from airflow_provider_kbatch.pipeline.workspace_claims import existing_claim_problem as existing_claim_problem
from airflow_provider_kbatch.pipeline.workspace_claims import judge_claim as judge_claim
from airflow_provider_kbatch.pipeline.workspace_options import ACCESS_MODES as ACCESS_MODES
from airflow_provider_kbatch.pipeline.workspace_options import RETENTIONS as RETENTIONS
from airflow_provider_kbatch.pipeline.workspace_options import Ports as Ports
from airflow_provider_kbatch.pipeline.workspace_options import Retention as Retention
from airflow_provider_kbatch.pipeline.workspace_options import Workspace as Workspace
from airflow_provider_kbatch.pipeline.workspace_options import ports_problems as ports_problems
from airflow_provider_kbatch.pipeline.workspace_record import SCHEMA_VERSION as SCHEMA_VERSION
from airflow_provider_kbatch.pipeline.workspace_record import WORKSPACE_KEY as WORKSPACE_KEY
from airflow_provider_kbatch.pipeline.workspace_record import OutputLocation as OutputLocation
from airflow_provider_kbatch.pipeline.workspace_record import WorkspaceRecord as WorkspaceRecord
from airflow_provider_kbatch.pipeline.workspace_record import read_workspace as read_workspace
from airflow_provider_kbatch.pipeline.workspace_record import record_output_location as record_output_location
from airflow_provider_kbatch.pipeline.workspace_record import record_workspace as record_workspace
from airflow_provider_kbatch.pipeline.workspace_record import (
    record_workspace_deleted as record_workspace_deleted,
)
from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.stage import Resources, StageSpec

VOLUME_NAME = "kbatch-workspace"
INIT_CONTAINER_NAME = "kbatch-workspace-init"
OUTPUT_ROOT = "/kbatch/out"
INPUT_ROOT = "/kbatch/in"
CHECKPOINT_MOUNT = "/kbatch/checkpoints"
INIT_MOUNT = "/kbatch/workspace"

# Creates the run's directories group-writable before the subPath mounts need them: kubelets
# create a missing subPath directory as root, which a non-root stage often cannot write.
_MKDIR = 'umask 0002 && mkdir -p -- "$@"'


# --------------------------------------------------------------------------- layout


def run_dir(run_id: str) -> str:
    """``runs/<run key>``: the run's directory on any workspace."""
    return f"runs/{names.run_key(run_id)}"


def output_subpath(run_id: str, output: str) -> str:
    return f"{run_dir(run_id)}/outputs/{output}"


def checkpoint_subpath(run_id: str, task_id: str, map_index: int = -1) -> str:
    suffix = f".{map_index}" if map_index >= 0 else ""
    return f"{run_dir(run_id)}/checkpoints/{task_id}{suffix}"


def output_mount(output: str) -> str:
    return f"{OUTPUT_ROOT}/{output}"


def input_mount(name: str) -> str:
    return f"{INPUT_ROOT}/{name}"


# --------------------------------------------------------------------------- pod wiring


@dataclass(frozen=True)
class Wiring:
    """What a stage's pod gets from its workspace: one volume, the sub-path mounts of the main
    container, the environment, and the init container that creates the directories."""

    volumes: tuple[dict[str, Any], ...]
    mounts: tuple[dict[str, Any], ...]
    env: Mapping[str, str]
    init_containers: tuple[dict[str, Any], ...] = ()


def wiring(
    workspace: Workspace,
    ports: Ports,
    *,
    claim: str,
    run_id: str,
    task_id: str,
    map_index: int = -1,
    completions: int = 1,
    image: str,
    resources: Resources | Mapping[str, Any] | None = None,
    input_subpaths: Mapping[str, str] | None = None,
) -> Wiring:
    """Volumes, mounts, environment and init container of a stage on ``claim``. An input in
    ``input_subpaths`` is mounted from that claim-relative directory (a memoized producer's cache
    hit: an earlier run's output on the same claim) instead of this run's."""
    mounts: list[dict[str, Any]] = []
    env: dict[str, str] = {runtime_env.IMAGE: image}
    to_create: list[str] = []
    if ports.output is not None:
        sub = output_subpath(run_id, ports.output)
        mounts.append({"name": VOLUME_NAME, "mountPath": output_mount(ports.output), "subPath": sub})
        env[runtime_env.OUTPUT_DIR] = output_mount(ports.output)
        env[runtime_env.STAGE_INDEXES] = str(IndexSet.full(completions))
        to_create.append(sub)
    for name in ports.inputs:
        mounts.append(
            {
                "name": VOLUME_NAME,
                "mountPath": input_mount(name),
                "subPath": (input_subpaths or {}).get(name) or output_subpath(run_id, name),
                "readOnly": True,
            }
        )
        env[runtime_env.input_env_name(name)] = input_mount(name)
    if ports.checkpoint:
        sub = checkpoint_subpath(run_id, task_id, map_index)
        mounts.append({"name": VOLUME_NAME, "mountPath": CHECKPOINT_MOUNT, "subPath": sub})
        env[runtime_env.CHECKPOINT_DIR] = CHECKPOINT_MOUNT
        to_create.append(sub)
    env.update(contract_env(ports.produces, ports.accepts))
    volume = {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim}}
    init: tuple[dict[str, Any], ...] = ()
    if workspace.prepare_dirs and to_create:
        container: dict[str, Any] = {
            "name": INIT_CONTAINER_NAME,
            "image": workspace.init_image or image,
            "command": ["sh", "-c", _MKDIR, INIT_CONTAINER_NAME, *(f"{INIT_MOUNT}/{s}" for s in to_create)],
            "volumeMounts": [{"name": VOLUME_NAME, "mountPath": INIT_MOUNT}],
        }
        if isinstance(resources, Resources) and (resources.requests or resources.limits):
            # the same as the main container: never raises the pod's effective request
            container["resources"] = {
                k: {r: str(v) for r, v in getattr(resources, k).items()}
                for k in ("requests", "limits")
                if getattr(resources, k)
            }
        init = (container,)
    return Wiring(volumes=(volume,), mounts=tuple(mounts), env=env, init_containers=init)


def wire_stage(
    spec: StageSpec,
    workspace: Workspace,
    ports: Ports,
    identity: names.JobIdentity,
    claim: str,
    input_subpaths: Mapping[str, str] | None = None,
) -> StageSpec:
    """``spec`` of the task instance ``identity`` wired to ``claim`` (:func:`wiring` applied)."""
    wired = wiring(
        workspace,
        ports,
        claim=claim,
        run_id=identity.run_id,
        task_id=identity.task_id,
        map_index=identity.map_index,
        completions=spec.completions,
        image=spec.image,
        resources=spec.resources,
        input_subpaths=input_subpaths,
    )
    return apply_wiring(spec, wired)


def apply_wiring(spec: StageSpec, wired: Wiring) -> StageSpec:
    """``spec`` with the workspace's volume, mounts, environment and init container added.

    The author's own values never silently win or lose: a clash raises ``KbatchSpecError``.
    """
    problems = ProblemCollector()
    for key in wired.env:
        if key in spec.env:
            problems.add(
                "env", f"{key} is set by the workspace wiring (output=/inputs=/checkpoint=)", "Remove it."
            )
    for volume in spec.volumes:
        if volume.get("name") == VOLUME_NAME:
            problems.add("volumes", f"the volume name {VOLUME_NAME!r} is reserved for the workspace")
    paths = {m["mountPath"] for m in wired.mounts}
    for mount in spec.volume_mounts:
        path = str(mount.get("mountPath", ""))
        if path in paths or path == "/kbatch" or path.startswith("/kbatch/"):
            problems.add("volume_mounts", f"{path!r} is reserved for the workspace (/kbatch/...)")
    problems.raise_if_any()
    template = dict(spec.job_template or {})
    if wired.init_containers:
        pod = template.get("spec", {}).get("template", {}).get("spec", {})
        existing = list(pod.get("initContainers") or [])
        if any(c.get("name") == INIT_CONTAINER_NAME for c in existing):
            raise KbatchSpecError(
                "job_template", f"the init container name {INIT_CONTAINER_NAME!r} is reserved"
            )
        pod = {**pod, "initContainers": [*wired.init_containers, *existing]}
        job_spec = dict(template.get("spec") or {})
        job_spec["template"] = {**dict(job_spec.get("template") or {}), "spec": pod}
        template["spec"] = job_spec
    return spec.replace(
        env={**spec.env, **wired.env},
        volumes=(*spec.volumes, *wired.volumes),
        volume_mounts=(*spec.volume_mounts, *wired.mounts),
        job_template=template or None,
    )
