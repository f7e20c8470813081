"""The helpers the check modules share: ``is_int``, ``int_at_least``, ``dig`` and the lookups
into the ``job_template``'s pod spec (:func:`template_pod_spec`, :func:`template_container_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.stage import (
    StageSpec,
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


def named_items(items: Any) -> list[Mapping[str, Any]]:
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def template_container_names(spec: StageSpec) -> set[str]:
    pod = template_pod_spec(spec)
    names = {spec.container_name}
    for key in ("containers", "initContainers"):
        names.update(str(c.get("name")) for c in named_items(pod.get(key)) if c.get("name"))
    return names
