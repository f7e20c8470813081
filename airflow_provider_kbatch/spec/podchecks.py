"""Checks of the pod-level fields of a :class:`StageSpec` (container, env, resources, metadata,
security, volumes, template). Used by :mod:`airflow_provider_kbatch.spec.validation`; each check
adds every problem it finds to a :class:`ProblemCollector` and never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.names import (
    LABEL_QUEUE_NAME,
    RESERVED_ANNOTATIONS,
    RESERVED_LABELS,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    qualified_name_problem,
)
from airflow_provider_kbatch.spec.quantity import parse_quantity
from airflow_provider_kbatch.spec.stage import (
    ConfigMapEnvSource,
    EnvFromConfigMap,
    EnvFromField,
    EnvFromSecret,
    PodOptions,
    Resources,
    RunAs,
    SecretEnvSource,
    StageSpec,
)

#: Environment variables the manifest builder sets; the author may not set them.
RESERVED_ENV = frozenset(
    {
        runtime_env.INDEX,
        runtime_env.INDEX_MAP,
        runtime_env.RUN_ID,
        runtime_env.STAGE,
        runtime_env.JOB_COMPLETION_INDEX,
    }
)

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
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
_TEMPLATE_OWNED = (
    (("metadata", "name"), "the Job name is derived from the task instance"),
    (("metadata", "generateName"), "the Job name is derived from the task instance"),
    (("metadata", "namespace"), "the namespace comes from the operator's namespace argument"),
    (("spec", "selector"), "the Job controller generates the selector"),
    (("spec", "manualSelector"), "the Job controller generates the selector"),
)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(
    p: ProblemCollector, field: str, value: Any, minimum: int, fix: str, *, optional: bool = True
) -> bool:
    """True when ``value`` is a usable int (problems added otherwise)."""
    if value is None and optional:
        return False
    if not is_int(value):
        p.add(field, f"must be an int, got {type(value).__name__} {value!r}", fix)
        return False
    if value < minimum:
        p.add(field, f"must be at least {minimum}, got {value}", fix)
        return False
    return True


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...`` or None when any step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def template_pod_spec(spec: StageSpec) -> Mapping[str, Any]:
    pod = dig(spec.job_template, "spec", "template", "spec")
    return pod if isinstance(pod, Mapping) else {}


def _named_items(items: Any) -> list[Mapping[str, Any]]:
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def template_container_names(spec: StageSpec) -> set[str]:
    pod = template_pod_spec(spec)
    names = {spec.container_name}
    for key in ("containers", "initContainers"):
        names.update(str(c.get("name")) for c in _named_items(pod.get(key)) if c.get("name"))
    return names


# --------------------------------------------------------------------------- container


def check_container(spec: StageSpec, p: ProblemCollector) -> None:
    if not isinstance(spec.image, str) or not spec.image.strip():
        p.add("image", "is empty", "Pass the container image, e.g. image='ghcr.io/acme/etl:1.4'.")
    elif spec.image != spec.image.strip() or any(c.isspace() for c in spec.image):
        p.add("image", f"{spec.image!r} contains whitespace", "Remove the spaces from the image reference.")
    for name in ("command", "args"):
        value = getattr(spec, name)
        if value is None:
            continue
        if isinstance(value, str):
            p.add(
                name,
                "is a single string, not a list of strings",
                f"Split it into a list, e.g. {name}=['python', '-m', 'etl'], or use "
                f"{name}=['sh', '-c', '<shell line>'] to run a shell line.",
            )
        elif not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            p.add(name, f"must be a list of strings, got {value!r}", "Quote every element.")
    if not isinstance(spec.container_name, str) or not is_dns1123_label(spec.container_name):
        p.add(
            "container_name",
            f"{spec.container_name!r} is not a DNS-1123 label",
            "Use lower-case letters, digits and '-', at most 63 characters (default 'main').",
        )
    if spec.working_dir is not None and (not isinstance(spec.working_dir, str) or not spec.working_dir):
        p.add(
            "working_dir",
            f"must be a non-empty path, got {spec.working_dir!r}",
            "Pass an absolute path or None.",
        )
    if spec.image_pull_policy not in (None, "Always", "IfNotPresent", "Never"):
        p.add(
            "image_pull_policy",
            f"{spec.image_pull_policy!r} is not supported",
            "Use 'Always', 'IfNotPresent', 'Never' or None.",
        )
    _check_object_names(p, "image_pull_secrets", spec.image_pull_secrets, "Secret")


def _check_object_names(p: ProblemCollector, field: str, names: Any, kind: str) -> None:
    if not isinstance(names, tuple):
        p.add(field, f"must be a list of {kind} names, got {names!r}", f"Pass {field}=['my-{kind.lower()}'].")
        return
    for i, name in enumerate(names):
        if not isinstance(name, str) or not is_dns1123_subdomain(name):
            p.add(f"{field}[{i}]", f"{name!r} is not a valid {kind} name", "Use a lower-case DNS subdomain.")


# --------------------------------------------------------------------------- env


def check_env(spec: StageSpec, p: ProblemCollector) -> None:
    if not isinstance(spec.env, Mapping):
        p.add(
            "env",
            f"must be a dict of name -> value, got {type(spec.env).__name__}",
            "Pass env={'KEY': 'value'}.",
        )
    else:
        for name, value in spec.env.items():
            _check_env_var(p, name, value)
    if not isinstance(spec.env_from, tuple):
        p.add(
            "env_from",
            f"must be a list, got {type(spec.env_from).__name__}",
            "Pass env_from=[SecretEnvSource('x')].",
        )
        return
    for i, source in enumerate(spec.env_from):
        field = f"env_from[{i}]"
        if not isinstance(source, (SecretEnvSource, ConfigMapEnvSource)):
            p.add(
                field,
                f"{source!r} is not a SecretEnvSource or ConfigMapEnvSource",
                "Wrap the name: SecretEnvSource('db-credentials') or ConfigMapEnvSource('settings').",
            )
            continue
        if not isinstance(source.name, str) or not is_dns1123_subdomain(source.name):
            p.add(
                f"{field}.name",
                f"{source.name!r} is not a valid object name",
                "Use a lower-case DNS subdomain.",
            )
        if source.prefix is not None and (
            not isinstance(source.prefix, str) or not _ENV_NAME.fullmatch(source.prefix)
        ):
            p.add(
                f"{field}.prefix",
                f"{source.prefix!r} is not a valid variable name prefix",
                "Use letters, digits, '_'.",
            )


def _check_env_var(p: ProblemCollector, name: object, value: object) -> None:
    field = f"env[{name!r}]"
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        p.add(
            field,
            "is not a valid environment variable name",
            "Use letters, digits, '_', '-' or '.', not starting with a digit.",
        )
    elif name in RESERVED_ENV:
        p.add(field, "is set by kbatch itself", f"Remove {name} from env; read it in the container instead.")
    if isinstance(value, str):
        return
    if isinstance(value, (EnvFromSecret, EnvFromConfigMap)):
        kind = "Secret" if isinstance(value, EnvFromSecret) else "ConfigMap"
        if not isinstance(value.name, str) or not is_dns1123_subdomain(value.name):
            p.add(
                f"{field}.name",
                f"{value.name!r} is not a valid {kind} name",
                "Use a lower-case DNS subdomain.",
            )
        if not isinstance(value.key, str) or not _CONFIG_KEY.fullmatch(value.key) or len(value.key) > 253:
            p.add(
                f"{field}.key",
                f"{value.key!r} is not a valid {kind} key",
                "Use letters, digits, '-', '_' or '.'.",
            )
        return
    if isinstance(value, EnvFromField):
        if not isinstance(value.field_path, str) or not value.field_path:
            p.add(f"{field}.field_path", "is empty", "Pass a pod field path such as 'metadata.name'.")
        return
    p.add(
        field,
        f"value must be a string, EnvFromSecret, EnvFromConfigMap or EnvFromField, got {type(value).__name__} {value!r}",
        "Quote plain values (env={'N': '3'}); reference secrets with EnvFromSecret(name, key), never copy them.",
    )


# --------------------------------------------------------------------------- resources


def check_resources(spec: StageSpec, p: ProblemCollector) -> None:
    res = spec.resources
    if res is None:
        return
    if not isinstance(res, Resources):
        p.add(
            "resources",
            f"must be Resources(requests=..., limits=...) or a dict with 'requests'/'limits', got {res!r}",
            "Pass resources={'requests': {'cpu': '500m'}, 'limits': {'memory': '1Gi'}}.",
        )
        return
    parsed: dict[str, dict[str, Any]] = {"requests": {}, "limits": {}}
    for kind in ("requests", "limits"):
        values = getattr(res, kind)
        if not isinstance(values, Mapping):
            p.add(
                f"resources.{kind}",
                f"must be a mapping of resource name -> quantity, got {type(values).__name__} {values!r}",
                f"Pass resources={{'{kind}': {{'cpu': '500m', 'memory': '1Gi'}}}}.",
            )
            continue
        for name, value in values.items():
            field = f"resources.{kind}[{name!r}]"
            problem = qualified_name_problem(name) if isinstance(name, str) else "is not a string"
            if problem:
                p.add(
                    field,
                    f"invalid resource name: {problem}",
                    "Use names like 'cpu', 'memory', 'nvidia.com/gpu'.",
                )
                continue
            try:
                quantity = parse_quantity(value)
            except ValueError as exc:
                p.add(field, str(exc), "Write quantities like '500m', '2', '512Mi' or '1Gi'.")
                continue
            if quantity < 0:
                p.add(field, f"{value!r} is negative", "Resource quantities must be zero or more.")
                continue
            parsed[kind][name] = quantity
    if not (isinstance(res.limits, Mapping) and isinstance(res.requests, Mapping)):
        return
    for name, limit in parsed["limits"].items():
        request = parsed["requests"].get(name)
        if request is not None and limit < request:
            p.add(
                f"resources.limits[{name!r}]",
                f"limit {res.limits[name]!r} is less than the request {res.requests[name]!r}",
                f"Raise the limit to at least the request, or lower resources.requests[{name!r}].",
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
        ("job_template.spec.template.spec.volumes", _named_items(template_pod_spec(spec).get("volumes"))),
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
        for i, container in enumerate(_named_items(pod.get(kind))):
            if dig(container, "securityContext", "privileged"):
                p.add(
                    f"{base}.{kind}[{i}].securityContext.privileged",
                    "is true, which the restricted Pod Security Standard forbids",
                    "Remove it, or pass pod_security='none'.",
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


# --------------------------------------------------------------------------- PodOptions

_POD_CHECKS = (
    check_container,
    check_env,
    check_metadata,
    check_scheduling,
    check_volumes,
    check_security,
    check_json,
)


def pod_options_problems(options: PodOptions) -> list[KbatchSpecError]:
    """Every problem of :class:`PodOptions`, each field named ``pod.<field>``."""
    if not isinstance(options, PodOptions):
        return [
            KbatchSpecError(
                "pod",
                f"must be PodOptions(...), got {type(options).__name__}",
                "Pass pod=PodOptions(node_selector=..., ...).",
            )
        ]
    probe = StageSpec(image="probe", **options.spec_fields())
    p = ProblemCollector()
    for check in _POD_CHECKS:
        check(probe, p)
    return [pod_field(err) for err in p.errors]


def pod_field(err: KbatchSpecError) -> KbatchSpecError:
    """``err`` with its field named as a :class:`PodOptions` field (``pod.node_selector[...]``)."""
    if err.field.startswith("pod."):
        return err
    return KbatchSpecError(f"pod.{err.field}", err.problem, err.fix)
