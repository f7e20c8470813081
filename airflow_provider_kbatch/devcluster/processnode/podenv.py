"""A container's environment as the kubelet builds it, and ``$(VAR)`` expansion. Pure.

Follows ``pkg/kubelet/kubelet_pods.go`` (``makeEnvironmentVariables``) and
``third_party/forked/golang/expansion``: ``envFrom`` first, then ``env`` in order, each value
expanded against the variables defined before it; ``command`` and ``args`` are expanded against
the final environment. An undefined ``$(VAR)`` stays as written; ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_kbatch.spec.quantity import parse_quantity

ANNOTATION_OR_LABEL = re.compile(r"^metadata\.(annotations|labels)\['(.*)'\]$")


class ConfigError(Exception):
    """The container cannot be configured yet (the kubelet's ``CreateContainerConfigError``)."""


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes ``$(VAR)`` expansion (``expansion.Expand``)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    value = lookup(name)
                    out.append(f"$({name})" if value is None else value)
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _format_map(values: Mapping[str, str]) -> str:
    """The downward API's rendering of all labels or annotations (``key="value"`` lines)."""
    import json

    return "\n".join(f"{key}={json.dumps(values[key])}" for key in sorted(values))


def field_ref_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a ``fieldRef.fieldPath`` (``podFieldSelectorRuntimeValue``)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    match = ANNOTATION_OR_LABEL.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", ""),
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName", ""),
        "status.hostIP": lambda: status.get("hostIP", ""),
        "status.hostIPs": lambda: ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIP": lambda: status.get("podIP", ""),
        "status.podIPs": lambda: ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return simple[path]()


def resource_field_value(
    pod: Mapping[str, Any], container_name: str, ref: Mapping[str, Any], allocatable: Mapping[str, str]
) -> str:
    """The value of a ``resourceFieldRef`` (``ExtractContainerResourceValue``).

    An unset limit reads as the node's allocatable amount, like the kubelet.
    """
    target = ref.get("containerName") or container_name
    containers = list(pod["spec"].get("containers", [])) + list(pod["spec"].get("initContainers") or [])
    container = next((c for c in containers if c["name"] == target), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef names unknown container {target!r}")
    kind, _, resource = str(ref["resource"]).partition(".")
    resources = container.get("resources") or {}
    amount = (resources.get(kind) or {}).get(resource)
    if amount is None and kind == "limits":
        amount = allocatable.get(resource)
    if amount is None:
        amount = "0"
    divisor = parse_quantity(ref.get("divisor") or "1") or 1  # a zero divisor reads as 1
    if resource == "cpu":  # in millicores, like the kubelet's MilliValue()
        return str(_ceil_div(math.ceil(parse_quantity(amount) * 1000), math.ceil(divisor * 1000)))
    return str(_ceil_div(math.ceil(parse_quantity(amount)), math.ceil(divisor)))


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass
class ObjectSource:
    """ConfigMaps and Secrets the node fetched for a pod, by name (``None``: not found)."""

    config_maps: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def config_map_bytes(self, name: str) -> dict[str, bytes] | None:
        obj = self.config_maps.get(name)
        if obj is None:
            return None
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
        return data

    def secret_bytes(self, name: str) -> dict[str, bytes] | None:
        obj = self.secrets.get(name)
        if obj is None:
            return None
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data

    def config_map_data(self, name: str) -> dict[str, str] | None:
        return _text(self.config_map_bytes(name))

    def secret_data(self, name: str) -> dict[str, str] | None:
        return _text(self.secret_bytes(name))


def _text(data: dict[str, bytes] | None) -> dict[str, str] | None:
    return None if data is None else {k: v.decode("utf-8", "replace") for k, v in data.items()}


def _refs_of(
    source: Mapping[str, Any], cm_key: str, secret_key: str, secret_name: str = "name"
) -> tuple[str, str]:
    cm = (source.get(cm_key) or {}).get("name", "")
    secret = (source.get(secret_key) or {}).get(secret_name, "")
    return cm, secret


def referenced_objects(pod: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a pod's environment and volumes refer to."""
    pairs: list[tuple[str, str]] = []
    spec = pod.get("spec", {})
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        pairs += [_refs_of(s, "configMapRef", "secretRef") for s in container.get("envFrom") or []]
        pairs += [
            _refs_of(v.get("valueFrom") or {}, "configMapKeyRef", "secretKeyRef")
            for v in container.get("env") or []
        ]
    for volume in spec.get("volumes") or []:
        pairs.append(_refs_of(volume, "configMap", "secret", "secretName"))
        pairs += [
            _refs_of(s, "configMap", "secret") for s in (volume.get("projected") or {}).get("sources") or []
        ]
    return {cm for cm, _ in pairs if cm}, {secret for _, secret in pairs if secret}


def _key_ref(ref: Mapping[str, Any], data: dict[str, str] | None, kind: str, var: str) -> str | None:
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found (env {var})')
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']} (env {var})")
    return data[ref["key"]]


def _env_from(container: Mapping[str, Any], objects: ObjectSource, env: dict[str, str]) -> None:
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configmap"
            data = objects.config_map_data(ref["name"])
        else:
            ref, kind = source["secretRef"], "secret"
            data = objects.secret_data(ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref["name"]}" not found (envFrom)')
        for key, value in data.items():
            if "=" not in key and key:
                env[prefix + key] = value


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    objects: ObjectSource,
    *,
    allocatable: Mapping[str, str],
    service_env: Mapping[str, str],
) -> dict[str, str]:
    """The environment the kubelet would give ``container`` (without the runtime's own variables)."""
    env: dict[str, str] = {}
    _env_from(container, objects, env)

    def lookup(name: str) -> str | None:
        return env.get(name, service_env.get(name))

    for var in container.get("env") or []:
        name = var["name"]
        value_from = var.get("valueFrom")
        value: str | None
        if not value_from:
            value = expand(var.get("value") or "", lookup)
        elif "fieldRef" in value_from:
            value = field_ref_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            value = resource_field_value(pod, container["name"], value_from["resourceFieldRef"], allocatable)
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            value = _key_ref(ref, objects.config_map_data(ref["name"]), "configmap", name)
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            value = _key_ref(ref, objects.secret_data(ref["name"]), "secret", name)
        else:
            raise ConfigError(f"unsupported valueFrom for env {name}: {sorted(value_from)}")
        if value is not None:
            env[name] = value
    for key, value in service_env.items():
        env.setdefault(key, value)
    return env


def expand_command(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded against the final environment."""
    argv = [expand(str(a), env.get) for a in container.get("command") or []]
    argv += [expand(str(a), env.get) for a in container.get("args") or []]
    return argv
