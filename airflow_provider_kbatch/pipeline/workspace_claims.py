"""The provider's workspace claims (pure): their name, labels and manifest, whether a claim found
by name is this run's and usable, and which generation to use. The I/O is in
:mod:`airflow_provider_kbatch.engine.storage`; re-exported by
:mod:`airflow_provider_kbatch.pipeline.workspace`, their import path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.workspace_options import Workspace
from airflow_provider_kbatch.pipeline.workspace_record import WorkspaceRecord
from airflow_provider_kbatch.spec import names

LABEL_WORKSPACE = "kbatch.io/workspace"
ANNOTATION_RETENTION = "kbatch.io/retention"
ANNOTATION_GENERATION = "kbatch.io/workspace-generation"


def claim_name(dag_id: str, run_id: str, generation: int = 1) -> str:
    """``kbatch-ws-<dag slug>-<h10>-g<generation>``: the provider's claim for one DAG run."""
    if generation < 1:
        raise ValueError(f"generation must be at least 1, got {generation}")
    return names.run_object_name("ws", dag_id, run_id, slug_chars=30, suffix=f"-g{generation}")


def claim_labels(dag_id: str, run_id: str) -> dict[str, str]:
    return {**names.run_labels(dag_id, run_id), LABEL_WORKSPACE: "true"}


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
