"""Checks of a :class:`StageSpec`'s pod metadata, scheduling, volumes and security (the
restricted pod profile). Used by :mod:`airflow_provider_kbatch.spec.validation` and for
:class:`PodOptions` (:func:`~airflow_provider_kbatch.spec.podchecks.pod_options_problems`); each
check adds every problem it finds to a :class:`ProblemCollector` and never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.checkbase import (
    dig,
    is_int,
    named_items,
    template_pod_spec,
)
from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.names import (
    LABEL_QUEUE_NAME,
    RESERVED_ANNOTATIONS,
    RESERVED_LABELS,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    qualified_name_problem,
)
from airflow_provider_kbatch.spec.stage import (
    RunAs,
    StageSpec,
)

_MAX_ANNOTATIONS_BYTES = 256 * 1024
_RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


# --------------------------------------------------------------------------- metadata and scheduling


def check_metadata(spec: StageSpec, p: ProblemCollector) -> None:
    _check_labels(p, "labels", spec.labels, reserved=True)
    _check_labels(p, "node_selector", spec.node_selector, reserved=False)
    if not isinstance(spec.annotations, Mapping):
        p.add(
            "annotations",
            f"must be a dict, got {type(spec.annotations).__name__}",
            "Pass annotations={'k': 'v'}.",
        )
        return
    size = 0
    for key, value in spec.annotations.items():
        field = f"annotations[{key!r}]"
        problem = qualified_name_problem(key) if isinstance(key, str) else "is not a string"
        if problem:
            p.add(
                field, f"invalid annotation key: {problem}", "Use '[prefix/]name', e.g. 'example.com/owner'."
            )
        elif key in RESERVED_ANNOTATIONS:
            p.add(field, "is set by kbatch itself", "Remove it from annotations.")
        if not isinstance(value, str):
            p.add(field, f"value must be a string, got {type(value).__name__}", "Quote the value.")
            continue
        size += len(str(key)) + len(value.encode("utf-8"))
    if size > _MAX_ANNOTATIONS_BYTES:
        p.add(
            "annotations",
            f"total {size} bytes, more than 256 KiB",
            "Store large values elsewhere (a ConfigMap).",
        )


def _check_labels(p: ProblemCollector, field: str, labels: Any, *, reserved: bool) -> None:
    if not isinstance(labels, Mapping):
        p.add(field, f"must be a dict, got {type(labels).__name__}", f"Pass {field}={{'key': 'value'}}.")
        return
    for key, value in labels.items():
        item = f"{field}[{key!r}]"
        problem = qualified_name_problem(key) if isinstance(key, str) else "is not a string"
        if problem:
            p.add(
                item,
                f"invalid label key: {problem}",
                "Use '[prefix/]name' with a name of at most 63 characters.",
            )
        elif reserved and key == LABEL_QUEUE_NAME:
            p.add(
                item,
                "is the Kueue queue label",
                "Pass queue_name=... instead; kbatch also suspends the Job for Kueue.",
            )
        elif reserved and (
            key in RESERVED_LABELS
            or key.startswith("batch.kubernetes.io/")
            or key in ("job-name", "controller-uid")
        ):
            p.add(item, "is set by kbatch or the Job controller", "Choose another key.")
        if not isinstance(value, str) or not is_label_value(value):
            p.add(
                item,
                f"value {value!r} is not a valid label value",
                "Use at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric.",
            )


def check_scheduling(spec: StageSpec, p: ProblemCollector) -> None:
    for field in ("priority_class_name", "service_account_name"):
        value = getattr(spec, field)
        if value is not None and (not isinstance(value, str) or not is_dns1123_subdomain(value)):
            p.add(
                field,
                f"{value!r} is not a valid object name",
                "Use a lower-case DNS subdomain, e.g. 'batch-low'.",
            )
    queue = spec.queue_name
    if queue is not None and (
        not isinstance(queue, str) or not queue or not is_dns1123_subdomain(queue) or len(queue) > 63
    ):
        p.add(
            "queue_name",
            f"{queue!r} is not a valid Kueue LocalQueue name",
            "Use the name of a LocalQueue in the Job's namespace: lower-case letters, digits, '-' and '.', "
            "at most 63 characters.",
        )
    if not isinstance(spec.tolerations, tuple):
        p.add(
            "tolerations", f"must be a list of dicts, got {spec.tolerations!r}", "Pass tolerations=[{...}]."
        )
        return
    for i, tol in enumerate(spec.tolerations):
        if not isinstance(tol, Mapping):
            p.add(
                f"tolerations[{i}]",
                f"must be a dict, got {tol!r}",
                "Use {'key': ..., 'operator': 'Exists', ...}.",
            )
        elif tol.get("operator", "Equal") not in ("Equal", "Exists"):
            p.add(
                f"tolerations[{i}].operator",
                f"{tol.get('operator')!r} is not supported",
                "Use 'Equal' or 'Exists'.",
            )


# --------------------------------------------------------------------------- volumes and security


def check_volumes(spec: StageSpec, p: ProblemCollector) -> None:
    seen: set[str] = set()
    for field, items in (("volumes", spec.volumes), ("volume_mounts", spec.volume_mounts)):
        if not isinstance(items, tuple):
            p.add(field, f"must be a list of dicts, got {items!r}", f"Pass {field}=[{{'name': ...}}].")
            continue
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not is_dns1123_label(name):
                p.add(f"{field}[{i}].name", f"{name!r} is not a valid volume name", "Use a DNS-1123 label.")
            if field == "volumes" and isinstance(name, str):
                if name in seen:
                    p.add(
                        f"volumes[{i}].name", f"{name!r} is declared twice", "Give every volume its own name."
                    )
                seen.add(name)
            if field == "volume_mounts" and isinstance(item, Mapping):
                path = item.get("mountPath")
                if not isinstance(path, str) or not path.startswith("/"):
                    p.add(
                        f"volume_mounts[{i}].mountPath",
                        f"{path!r} is not an absolute path",
                        "Pass 'mountPath': '/data'.",
                    )


def check_security(spec: StageSpec, p: ProblemCollector) -> None:
    if spec.pod_security not in ("restricted", "none"):
        p.add(
            "pod_security", f"{spec.pod_security!r} is not supported", "Use 'restricted' (default) or 'none'."
        )
        return
    if not isinstance(spec.run_as, RunAs):
        p.add(
            "run_as",
            f"must be RunAs(user=..., group=..., fs_group=...), got {spec.run_as!r}",
            "Pass run_as=RunAs(user=1000).",
        )
        return
    for attr in ("user", "group", "fs_group"):
        value = getattr(spec.run_as, attr)
        if (value is not None or attr != "fs_group") and (not is_int(value) or value < 0):
            p.add(
                f"run_as.{attr}",
                f"must be a non-negative int, got {value!r}",
                "Pass a numeric id such as 1000.",
            )
    if spec.pod_security != "restricted":
        return
    if is_int(spec.run_as.user) and spec.run_as.user == 0:
        p.add(
            "run_as.user",
            "is 0 (root), which the restricted Pod Security Standard forbids",
            "Use a non-root uid, or pass pod_security='none' to opt out.",
        )
    volumes = list(spec.volumes) if isinstance(spec.volumes, tuple) else []
    for where, items in (
        ("volumes", volumes),
        ("job_template.spec.template.spec.volumes", named_items(template_pod_spec(spec).get("volumes"))),
    ):
        for i, vol in enumerate(items):
            if not isinstance(vol, Mapping):
                continue
            kinds = set(vol) - {"name"}
            bad = sorted(kinds - _RESTRICTED_VOLUME_TYPES)
            if bad:
                p.add(
                    f"{where}[{i}]",
                    f"volume {vol.get('name')!r} uses {', '.join(bad)}, which the restricted Pod Security Standard forbids",
                    "Use a PersistentVolumeClaim, emptyDir, configMap, secret or projected volume, or pass pod_security='none'.",
                )
    _check_template_security(spec, p)


def _check_template_security(spec: StageSpec, p: ProblemCollector) -> None:
    pod = template_pod_spec(spec)
    base = "job_template.spec.template.spec"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            p.add(
                f"{base}.{key}",
                "is true, which the restricted Pod Security Standard forbids",
                "Remove it, or pass pod_security='none'.",
            )
    for kind in ("containers", "initContainers"):
        for i, container in enumerate(named_items(pod.get(kind))):
            if dig(container, "securityContext", "privileged"):
                p.add(
                    f"{base}.{kind}[{i}].securityContext.privileged",
                    "is true, which the restricted Pod Security Standard forbids",
                    "Remove it, or pass pod_security='none'.",
                )
