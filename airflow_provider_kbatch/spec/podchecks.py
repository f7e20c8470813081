"""Checks of the container-level fields of a :class:`StageSpec` (container, env, resources), and
:func:`pod_options_problems` for :class:`PodOptions`. Used by
:mod:`airflow_provider_kbatch.spec.validation`; each check adds every problem it finds to a
:class:`ProblemCollector` and never raises.

The other checks live beside it: metadata, scheduling, volumes and security in
:mod:`~airflow_provider_kbatch.spec.metachecks`, the ``job_template``'s shape in
:mod:`~airflow_provider_kbatch.spec.templatechecks`, the shared helpers in
:mod:`~airflow_provider_kbatch.spec.checkbase`; their names are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec.checkbase import (
    dig,
    int_at_least,
    is_int,
    template_container_names,
    template_pod_spec,
)
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.metachecks import (
    check_metadata,
    check_scheduling,
    check_security,
    check_volumes,
)
from airflow_provider_kbatch.spec.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
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
    SecretEnvSource,
    StageSpec,
)
from airflow_provider_kbatch.spec.templatechecks import JOB_SHAPE, check_json, check_template

__all__ = [
    "JOB_SHAPE",
    "RESERVED_ENV",
    "check_container",
    "check_env",
    "check_json",
    "check_metadata",
    "check_resources",
    "check_scheduling",
    "check_security",
    "check_template",
    "check_volumes",
    "dig",
    "int_at_least",
    "is_int",
    "pod_field",
    "pod_options_problems",
    "template_container_names",
    "template_pod_spec",
]

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
