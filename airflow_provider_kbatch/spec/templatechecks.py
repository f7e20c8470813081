"""Checks of the ``job_template`` (its shape, the fields kbatch owns, the pod template's
``restartPolicy``) and of the raw dict fields being plain JSON. Used by
:mod:`airflow_provider_kbatch.spec.validation`; each check adds every problem it finds to a
:class:`ProblemCollector` and never raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.checkbase import (
    dig,
)
from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.stage import (
    StageSpec,
)

_TEMPLATE_OWNED = (
    (("metadata", "name"), "the Job name is derived from the task instance"),
    (("metadata", "generateName"), "the Job name is derived from the task instance"),
    (("metadata", "namespace"), "the namespace comes from the operator's namespace argument"),
    (("spec", "selector"), "the Job controller generates the selector"),
    (("spec", "manualSelector"), "the Job controller generates the selector"),
)


# --------------------------------------------------------------------------- job_template


_RAW_FIELDS = (
    "job_template",
    "pod_failure_policy",
    "success_policy",
    "volumes",
    "volume_mounts",
    "tolerations",
)


def check_json(spec: StageSpec, p: ProblemCollector) -> None:
    """Raw dict fields go to the API server as JSON: they must be plain JSON data."""
    for field in _RAW_FIELDS:
        value = getattr(spec, field)
        try:
            json.dumps(value, allow_nan=False, default=_tuples_only)
        except (TypeError, ValueError) as exc:
            p.add(
                field,
                f"is not plain JSON data ({exc})",
                "Use only dicts, lists, strings, numbers, booleans and None.",
            )


def _tuples_only(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} {obj!r} is not JSON serialisable")


# The shape of a Job where the provider merges or reads the template: a dict (``MAP``) where the
# Job schema has an object, a list where it has a list (``[item shape]``), a string (``STR``).
# A template of the wrong shape there would be dropped by the merge without a word.
MAP: Mapping[str, Any] = {}
STR = "string"
_CONTAINER: Mapping[str, Any] = {
    "name": STR,
    "image": STR,
    "command": [STR],
    "args": [STR],
    "env": [{"name": STR, "valueFrom": MAP}],
    "envFrom": [MAP],
    "ports": [MAP],
    "volumeMounts": [MAP],
    "resources": {"requests": MAP, "limits": MAP},
    "securityContext": {"capabilities": MAP, "seccompProfile": MAP},
    "lifecycle": MAP,
    "livenessProbe": MAP,
    "readinessProbe": MAP,
    "startupProbe": MAP,
    "workingDir": STR,
}
_METADATA: Mapping[str, Any] = {"labels": MAP, "annotations": MAP}
_POD_SPEC: Mapping[str, Any] = {
    "containers": [_CONTAINER],
    "initContainers": [_CONTAINER],
    "ephemeralContainers": [_CONTAINER],
    "volumes": [MAP],
    "tolerations": [MAP],
    "nodeSelector": MAP,
    "affinity": MAP,
    "imagePullSecrets": [MAP],
    "securityContext": MAP,
    "topologySpreadConstraints": [MAP],
    "hostAliases": [MAP],
    "readinessGates": [MAP],
    "schedulingGates": [MAP],
    "resourceClaims": [MAP],
    "dnsConfig": MAP,
    "overhead": MAP,
    "restartPolicy": STR,
    "serviceAccountName": STR,
    "priorityClassName": STR,
}
JOB_SHAPE: Mapping[str, Any] = {
    "apiVersion": STR,
    "kind": STR,
    "metadata": _METADATA,
    "spec": {
        "template": {"metadata": _METADATA, "spec": _POD_SPEC},
        "podFailurePolicy": {"rules": [MAP]},
        "successPolicy": {"rules": [MAP]},
        "selector": MAP,
    },
}
_NAMED_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _kind(shape: Any) -> str:
    if isinstance(shape, Mapping):
        return "mapping"
    return "list" if isinstance(shape, list) else "string"


def _check_shape(p: ProblemCollector, path: str, value: Any, shape: Any) -> None:
    """Add a problem where ``value`` does not have the ``shape`` (None counts as unset)."""
    if value is None:
        return
    if isinstance(shape, Mapping):
        if not isinstance(value, Mapping):
            p.add(
                path,
                f"must be a mapping, got {type(value).__name__}",
                f"Write {path} as a dict (camelCase keys, as in a Job manifest), or remove it.",
            )
            return
        for key, inner in shape.items():
            _check_shape(p, f"{path}.{key}", value.get(key), inner)
    elif isinstance(shape, list):
        if not isinstance(value, (list, tuple)):
            p.add(
                path,
                f"must be a list, got {type(value).__name__}",
                f"Write {path} as a list, e.g. [{{...}}], or remove it.",
            )
            return
        for i, item in enumerate(value):
            _check_shape(p, f"{path}[{i}]", item, shape[0])
        if path.rsplit(".", 1)[-1] in _NAMED_LISTS:
            _check_container_names(p, path, value)
    elif not isinstance(value, str):
        p.add(path, f"must be a string, got {type(value).__name__} {value!r}", "Quote it.")


def _check_container_names(p: ProblemCollector, path: str, items: Any) -> None:
    """A template container without a name cannot be merged (the merge would drop it)."""
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and not item.get("name"):
            p.add(
                f"{path}[{i}].name",
                "is missing",
                "Name it 'main' (or the container_name) to merge it into kbatch's container, "
                "or give a sidecar its own name.",
            )


def check_template(spec: StageSpec, p: ProblemCollector) -> None:
    tpl = spec.job_template
    if tpl is None:
        return
    if not isinstance(tpl, Mapping):
        p.add(
            "job_template",
            f"must be a dict (a Job manifest), got {type(tpl).__name__}",
            "Pass a camelCase Job dict.",
        )
        return
    before = len(p)
    _check_shape(p, "job_template", tpl, JOB_SHAPE)
    if len(p) > before:  # the checks below read the template through its shape
        return
    if tpl.get("apiVersion", "batch/v1") != "batch/v1" or tpl.get("kind", "Job") != "Job":
        p.add(
            "job_template", "is not a batch/v1 Job", "Remove apiVersion/kind or set them to batch/v1 / Job."
        )
    for path, why in _TEMPLATE_OWNED:
        if dig(tpl, *path) is not None:
            p.add(f"job_template.{'.'.join(path)}", f"cannot be set: {why}", "Remove it from job_template.")
    restart = dig(tpl, "spec", "template", "spec", "restartPolicy")
    if restart not in (None, "Never", "OnFailure"):
        p.add(
            "job_template.spec.template.spec.restartPolicy",
            f"{restart!r} is not allowed for a Job",
            "Remove it (kbatch uses 'Never'), or use 'OnFailure'.",
        )
