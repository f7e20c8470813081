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
schema version, in :mod:`airflow_provider_kbatch.pipeline.records` (re-exported here).
Everything here is pure; the I/O is in :mod:`airflow_provider_kbatch.engine.storage`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.contracts import Contract, as_contract, contract_env
from airflow_provider_kbatch.pipeline.records import SCHEMA_VERSION as SCHEMA_VERSION
from airflow_provider_kbatch.pipeline.records import WORKSPACE_KEY as WORKSPACE_KEY
from airflow_provider_kbatch.pipeline.records import OutputLocation as OutputLocation
from airflow_provider_kbatch.pipeline.records import WorkspaceRecord as WorkspaceRecord
from airflow_provider_kbatch.pipeline.records import read_workspace as read_workspace
from airflow_provider_kbatch.pipeline.records import record_output_location as record_output_location
from airflow_provider_kbatch.pipeline.records import record_workspace as record_workspace
from airflow_provider_kbatch.pipeline.records import record_workspace_deleted as record_workspace_deleted
from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.quantity import parse_quantity
from airflow_provider_kbatch.spec.stage import Resources, StageSpec

Retention = Literal["delete_on_success", "retain"]
RETENTIONS: tuple[Retention, ...] = ("delete_on_success", "retain")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")

VOLUME_NAME = "kbatch-workspace"
INIT_CONTAINER_NAME = "kbatch-workspace-init"
OUTPUT_ROOT = "/kbatch/out"
INPUT_ROOT = "/kbatch/in"
CHECKPOINT_MOUNT = "/kbatch/checkpoints"
INIT_MOUNT = "/kbatch/workspace"

LABEL_WORKSPACE = "kbatch.io/workspace"
ANNOTATION_RETENTION = "kbatch.io/retention"
ANNOTATION_GENERATION = "kbatch.io/workspace-generation"


_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9]+")
# Creates the run's directories group-writable before the subPath mounts need them: kubelets
# create a missing subPath directory as root, which a non-root stage often cannot write.
_MKDIR = 'umask 0002 && mkdir -p -- "$@"'


# --------------------------------------------------------------------------- the author's options


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """Where a run's stages keep their outputs and checkpoints.

    Either ``claim_name`` (an existing PVC; the run uses ``runs/<run key>/`` in it and nothing is
    ever deleted), or ``create=True``: one claim per DAG run with ``storage_class`` (``None``: the
    cluster default), ``size``, ``access_modes`` (fan-out over several nodes needs
    ``ReadWriteMany``) and ``retention`` (``"delete_on_success"``: deleted by
    :class:`~airflow_provider_kbatch.operators.workspace.KbatchWorkspaceCleanupOperator` when the
    run succeeded; ``"retain"``: kept).

    ``prepare_dirs`` adds an init container (image ``init_image``, default the stage's image; it
    needs ``sh`` and ``mkdir``) that creates the stage's directories group-writable before they
    are mounted by sub-path.
    """

    claim_name: str | None = None
    create: bool = False
    storage_class: str | None = None
    size: str = "1Gi"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    retention: Retention = "delete_on_success"
    prepare_dirs: bool = True
    init_image: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.access_modes, str):
            object.__setattr__(self, "access_modes", (self.access_modes,))
        else:
            object.__setattr__(self, "access_modes", tuple(self.access_modes))
        problems = ProblemCollector()
        if (self.claim_name is None) == (not self.create):
            problems.add(
                "workspace",
                "needs exactly one of claim_name= (an existing claim) or create=True (one claim per run)",
            )
        if self.claim_name is not None and not names.is_dns1123_subdomain(self.claim_name):
            problems.add("workspace.claim_name", f"{self.claim_name!r} is not a valid claim name")
        if self.claim_name is not None and self.storage_class is not None:
            problems.add(
                "workspace.storage_class", "applies to create=True only", "Drop it or use create=True."
            )
        try:
            if parse_quantity(self.size) <= 0:
                problems.add("workspace.size", f"must be positive, got {self.size!r}")
        except (ValueError, TypeError) as err:
            problems.add("workspace.size", f"{self.size!r} is not a quantity ({err})", "Use e.g. '10Gi'.")
        bad = [m for m in self.access_modes if m not in ACCESS_MODES]
        if bad or not self.access_modes:
            problems.add(
                "workspace.access_modes", f"expected some of {', '.join(ACCESS_MODES)}, got {bad or '[]'}"
            )
        if self.retention not in RETENTIONS:
            problems.add(
                "workspace.retention", f"expected one of {', '.join(RETENTIONS)}, got {self.retention!r}"
            )
        problems.raise_if_any()

    @property
    def provisioned(self) -> bool:
        """The provider creates (and may delete) the claim."""
        return self.create


@dataclass(frozen=True)
class Ports:
    """What a stage reads and writes: ``output`` (a name), ``inputs`` (name -> producing task id,
    ``None`` when it is looked up), the contracts, and whether it checkpoints."""

    output: str | None = None
    inputs: Mapping[str, str | None] = field(default_factory=dict)
    produces: Contract | None = None
    accepts: Mapping[str, Contract] = field(default_factory=dict)
    checkpoint: bool = False

    @classmethod
    def build(
        cls,
        *,
        output: str | None = None,
        inputs: Sequence[str] | Mapping[str, str] | None = None,
        produces: Contract | Mapping[str, Any] | None = None,
        accepts: Mapping[str, Contract | Mapping[str, Any]] | None = None,
        checkpoint: bool = False,
    ) -> Ports:
        """Normalise the operator's arguments (``inputs`` as a list of names or a name -> stage map)."""
        if isinstance(inputs, str):
            inputs = [inputs]
        resolved: dict[str, str | None] = (
            dict(inputs.items()) if isinstance(inputs, Mapping) else dict.fromkeys(inputs or ())
        )
        return cls(
            output=output,
            inputs=resolved,
            produces=as_contract(produces) if produces is not None else None,
            accepts={k: as_contract(v) for k, v in (accepts or {}).items()},
            checkpoint=bool(checkpoint),
        )

    @property
    def used(self) -> bool:
        return bool(self.output or self.inputs or self.checkpoint)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and _NAME.match(name) is not None and ".." not in name


def _input_problems(ports: Ports, problems: ProblemCollector) -> None:
    mangled: dict[str, str] = {}
    for name, stage in ports.inputs.items():
        if not _valid_name(name):
            continue  # reported with the names
        other = mangled.setdefault(runtime_env.input_env_name(name), name)
        if other != name:
            problems.add(
                "inputs",
                f"{other!r} and {name!r} map to the same variable {runtime_env.input_env_name(name)}",
            )
        if stage is not None and (not isinstance(stage, str) or not stage):
            problems.add("inputs", f"input {name!r}: the producing stage must be a task id, got {stage!r}")
    if ports.output is not None and ports.output in ports.inputs:
        problems.add(
            "inputs", f"{ports.output!r} is also this stage's output", "A stage cannot read its own output."
        )
    for name in ports.accepts:
        if name not in ports.inputs:
            problems.add(
                "accepts", f"{name!r} is not one of the inputs ({', '.join(ports.inputs) or 'none'})"
            )


def ports_problems(
    ports: Ports, workspace: Workspace | None, *, map_index: int = -1
) -> list[KbatchSpecError]:
    """Every mistake in a stage's ports, named by the operator argument."""
    problems = ProblemCollector()
    if ports.used and workspace is None:
        problems.add(
            "workspace",
            "output=, inputs= and checkpoint=True need a workspace",
            "Pass workspace=Workspace(...).",
        )
    for arg, name in [("output", ports.output), *(("inputs", n) for n in ports.inputs)]:
        if name is not None and not _valid_name(name):
            problems.add(
                arg,
                f"{name!r} is not a valid output name",
                "Use 1-63 letters, digits, '_', '.' or '-', starting and ending with a letter or digit.",
            )
    _input_problems(ports, problems)
    if ports.produces is not None and ports.output is None:
        problems.add("produces", "a contract needs an output", "Pass output='<name>'.")
    if ports.output is not None and map_index >= 0:
        problems.add(
            "output",
            "every mapped task instance would write the same output",
            "Fan out with completions= (an Indexed Job) instead of mapping the task.",
        )
    return list(problems.errors)


# --------------------------------------------------------------------------- names and layout


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def claim_name(dag_id: str, run_id: str, generation: int = 1) -> str:
    """``kbatch-ws-<dag slug>-<h10>-g<generation>``: the provider's claim for one DAG run."""
    if generation < 1:
        raise ValueError(f"generation must be at least 1, got {generation}")
    slug = _NOT_DNS.sub("-", dag_id.lower()).strip("-")[:30].rstrip("-")
    h10 = _sha(dag_id, run_id)[:10]
    return f"kbatch-ws-{slug}-{h10}-g{generation}" if slug else f"kbatch-ws-{h10}-g{generation}"


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
) -> Wiring:
    """Volumes, mounts, environment and init container of a stage on ``claim``."""
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
                "subPath": output_subpath(run_id, name),
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
    spec: StageSpec, workspace: Workspace, ports: Ports, identity: names.JobIdentity, claim: str
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


# --------------------------------------------------------------------------- the claim


def claim_labels(dag_id: str, run_id: str) -> dict[str, str]:
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_DAG_ID: names.sanitize_label_value(dag_id),
        names.LABEL_RUN_KEY: names.run_key(run_id),
        LABEL_WORKSPACE: "true",
    }


def claim_manifest(workspace: Workspace, *, dag_id: str, run_id: str, generation: int) -> dict[str, Any]:
    """The PersistentVolumeClaim body of a provider-created workspace (camelCase dict)."""
    spec: dict[str, Any] = {
        "accessModes": list(workspace.access_modes),
        "resources": {"requests": {"storage": str(workspace.size)}},
    }
    if workspace.storage_class is not None:
        spec["storageClassName"] = workspace.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(dag_id, run_id, generation),
            "labels": claim_labels(dag_id, run_id),
            "annotations": {
                names.ANNOTATION_DAG_ID: dag_id,
                names.ANNOTATION_RUN_ID: run_id,
                ANNOTATION_RETENTION: workspace.retention,
                ANNOTATION_GENERATION: str(generation),
            },
        },
        "spec": spec,
    }


def claim_belongs_to(pvc: Mapping[str, Any], dag_id: str, run_id: str) -> bool:
    """The claim was created by the provider for this very DAG run (full ids, not hashed labels)."""
    annotations = pvc.get("metadata", {}).get("annotations") or {}
    return (
        annotations.get(names.ANNOTATION_DAG_ID) == dag_id
        and annotations.get(names.ANNOTATION_RUN_ID) == run_id
    )


def claim_usable(pvc: Mapping[str, Any] | None) -> bool:
    """Exists, is not being deleted and has not lost its volume."""
    if pvc is None:
        return False
    return (
        not pvc.get("metadata", {}).get("deletionTimestamp")
        and (pvc.get("status") or {}).get("phase") != "Lost"
    )


# --------------------------------------------------------------------------- which claim to use


ClaimVerdict = Literal["use", "create", "gone"]


def candidate_generation(record: WorkspaceRecord | None) -> int:
    """The generation of the provider's claim to try first: the recorded one, the next after a
    recorded deletion, else 1."""
    if record is None or not record.provisioned:
        return 1
    return max(1, record.generation + (1 if record.state == "deleted" else 0))


def judge_claim(
    found: Mapping[str, Any] | None,
    *,
    name: str,
    record: WorkspaceRecord | None,
    dag_id: str,
    run_id: str,
) -> ClaimVerdict:
    """What to do with the provider's claim ``name``, given what the API server returned for it.

    ``"use"`` it; ``"create"`` it (missing and never used); ``"gone"``: it was deleted, is being
    deleted or lost its volume -- never reuse the name, move to the next generation. Raises
    ``ValueError`` when a claim of that name belongs to another DAG run.
    """
    if found is None:
        used_before = record is not None and record.claim == name and record.uid is not None
        return "gone" if used_before else "create"
    if not claim_belongs_to(found, dag_id, run_id):
        raise ValueError(
            f"claim {name!r} exists but was not created for DAG {dag_id!r} run {run_id!r} "
            f"(its {names.ANNOTATION_DAG_ID}/{names.ANNOTATION_RUN_ID} annotations differ); delete or rename it"
        )
    return "use" if claim_usable(found) else "gone"


def existing_claim_problem(found: Mapping[str, Any] | None, name: str) -> str | None:
    """Why an author's existing claim cannot be used, or ``None``."""
    if found is None:
        return f"workspace claim {name!r} does not exist; create it first, or use Workspace(create=True)"
    if not claim_usable(found):
        return f"workspace claim {name!r} is being deleted or lost its volume"
    return None
