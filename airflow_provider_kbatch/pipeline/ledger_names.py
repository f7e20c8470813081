"""Naming and identity of the run ledger (pure): the ConfigMap's name, labels, annotations and
selector, the identity check of a ledger found by name, and the stage keys inside it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.pipeline.ledger_schema import (
    ANNOTATION_SCHEMA_VERSION,
    KEY_OK,
    KEY_PREFIX,
    LABEL_LEDGER,
    MAX_KEY_CHARS,
    SCHEMA_VERSION,
    LedgerIdentityError,
)
from airflow_provider_kbatch.spec import names

_NOT_KEY_CHAR = re.compile(r"[^-._a-zA-Z0-9]+")


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def ledger_name(dag_id: str, run_id: str) -> str:
    """``kbatch-ledger-<dag slug>-<h10>``: a DNS label (<= 63 chars), one per (dag_id, run_id)."""
    return names.run_object_name("ledger", dag_id, run_id, slug_chars=38)


def ledger_labels(dag_id: str, run_id: str) -> dict[str, str]:
    """Labels of the ledger ConfigMap; dag id and run key are the same values Jobs carry."""
    return {**names.run_labels(dag_id, run_id), LABEL_LEDGER: "true"}


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


def check_ledger(config_map: Mapping[str, Any] | None, dag_id: str, run_id: str) -> None:
    """Raise :class:`LedgerIdentityError` when ``config_map`` (found by :func:`ledger_name`) is not
    the ledger of ``dag_id``/``run_id``: its annotations name another DAG or run (the name holds a
    40-bit hash of both), or a newer schema version. A missing ConfigMap passes, and so does one
    an older provider created without the annotations (they are added on the next write)."""
    metadata = (config_map or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    name = metadata.get("name") or ledger_name(dag_id, run_id)
    found = (annotations.get(names.ANNOTATION_DAG_ID), annotations.get(names.ANNOTATION_RUN_ID))
    if found != (None, None) and found != (dag_id, run_id):
        raise LedgerIdentityError(
            f"ledger ConfigMap {name!r} belongs to DAG {found[0]!r} run {found[1]!r}, not to DAG "
            f"{dag_id!r} run {run_id!r} (both hash to that name; its {names.ANNOTATION_DAG_ID} / "
            f"{names.ANNOTATION_RUN_ID} annotations differ); nothing was read from it or written to it. "
            "Run under another run id, or delete that ConfigMap if the other run's records are no longer needed"
        )
    version = annotations.get(ANNOTATION_SCHEMA_VERSION)
    if version is not None and (not str(version).isdigit() or int(version) > SCHEMA_VERSION):
        raise LedgerIdentityError(
            f"ledger ConfigMap {name!r}: {ANNOTATION_SCHEMA_VERSION} {version!r} is newer than this provider "
            f"understands ({SCHEMA_VERSION}); upgrade airflow-provider-kbatch on every worker"
        )


def ledger_data(config_map: Mapping[str, Any] | None, dag_id: str, run_id: str) -> dict[str, str]:
    """The data of this run's ledger as read by name (``{}`` when missing), identity checked."""
    check_ledger(config_map, dag_id, run_id)
    return dict((config_map or {}).get("data") or {})


def stage_key(task_id: str, map_index: int = -1) -> str:
    """``stage.<task_id>[.<map_index>]``, a valid ConfigMap key.

    A task id with characters a key cannot hold, or too long, becomes
    ``<sanitised prefix>-<sha256[:8]>``. Records also store ``task_id``/``map_index``, and the
    merge functions refuse to mix two task instances under one key.
    """
    suffix = f".{map_index}" if map_index >= 0 else ""
    room = MAX_KEY_CHARS - len(KEY_PREFIX) - len(suffix)
    body = task_id
    if not task_id or not KEY_OK.match(task_id) or len(task_id) > room:
        body = _NOT_KEY_CHAR.sub("-", task_id)[: room - 9].strip("-.") + "-" + _sha(task_id)[:8]
    return f"{KEY_PREFIX}{body}{suffix}"


def stage_keys(data: Mapping[str, str]) -> list[str]:
    """Every stage key of a ledger's data."""
    return sorted(k for k in data if k.startswith(KEY_PREFIX))
