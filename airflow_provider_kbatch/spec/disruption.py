"""A stage's PodDisruptionBudget (``disruption_budget=``): checked, and compiled to a PDB (pure).

The author writes it the Kubernetes way, one of the two keys of a PDB's spec, snake_case or
camelCase: ``{"min_available": 2}``, ``{"max_unavailable": "50%"}`` (an int of 0 or more, or a
percentage ``"0%"``..``"100%"``; a rendered ``"2"`` counts as 2).

Kubernetes computes ``maxUnavailable`` and percentages only for pods of a controller with a
``scale`` subresource (Deployment, ReplicaSet, StatefulSet...). A Job has none, so for a Job's
pods only an integer ``minAvailable`` works ("arbitrary workloads" in the PDB documentation): the
disruption controller cannot count the expected pods of anything else and refuses every eviction.
:func:`pdb_manifest` therefore compiles the budget into an integer ``minAvailable`` of the pods
*this* Job runs at once: ``expected = min(parallelism, completions of the attempt)``; a
``max_unavailable`` of ``m`` becomes ``max(0, expected - m)``; percentages are of ``expected``,
rounded up as Kubernetes rounds them (a minimum up, an allowance of unavailability up).

The PDB is named like the Job, selects its pods by the Job controller's
``batch.kubernetes.io/controller-uid`` label (the Job's uid: the pods of this Job and no other)
and is owned by the Job, so the garbage collector deletes it with the Job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.checkbase import is_int
from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL

FIELD = "disruption_budget"
#: accepted keys -> the PDB spec key they mean
KEYS = {
    "min_available": "minAvailable",
    "minAvailable": "minAvailable",
    "max_unavailable": "maxUnavailable",
    "maxUnavailable": "maxUnavailable",
}
_PERCENT = re.compile(r"(\d{1,3})%")
_DIGITS = re.compile(r"\d+")
_FIX = "Pass disruption_budget={'min_available': 2} or {'max_unavailable': '50%'} (one key)."


def normalized(budget: Mapping[str, Any]) -> tuple[str, int | str]:
    """``(PDB key, value)`` of a checked budget: ``("minAvailable", 2)``, ``("maxUnavailable", "50%")``."""
    ((key, value),) = budget.items()
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    return KEYS[key], value.strip() if isinstance(value, str) else value


def check_disruption_budget(spec: Any, p: ProblemCollector) -> None:
    """Every problem of ``spec.disruption_budget`` (None: no PDB)."""
    budget = spec.disruption_budget
    if budget is None:
        return
    if not isinstance(budget, Mapping):
        p.add(FIELD, f"must be a mapping, got {type(budget).__name__} {budget!r}", _FIX)
        return
    unknown = sorted(str(k) for k in budget if k not in KEYS)
    if unknown:
        p.add(FIELD, f"has no key {', '.join(map(repr, unknown))}", _FIX)
        return
    if len(budget) != 1:
        what = "no key" if not budget else f"{len(budget)} keys ({', '.join(map(str, budget))})"
        p.add(FIELD, f"needs exactly one of min_available or max_unavailable, got {what}", _FIX)
        return
    ((key, value),) = budget.items()
    field = f"{FIELD}.{key}"
    if is_int(value):
        if value < 0:
            p.add(field, f"must be 0 or more, got {value}", _FIX)
        return
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return
        match = _PERCENT.fullmatch(text)
        if match is None:
            p.add(field, f"must be an int or a percentage like '50%', got {value!r}", _FIX)
        elif int(match.group(1)) > 100:
            p.add(field, f"{value!r} is more than 100%", _FIX)
        return
    p.add(field, f"must be an int or a percentage string, got {type(value).__name__} {value!r}", _FIX)


def expected_pods(job: Mapping[str, Any]) -> int:
    """The pods the Job runs at once: ``min(parallelism, completions)`` (parallelism defaults to 1)."""
    spec = job.get("spec") or {}
    parallelism = spec.get("parallelism")
    parallelism = 1 if parallelism is None else int(parallelism)
    completions = spec.get("completions")
    return parallelism if completions is None else min(parallelism, int(completions))


def min_available(budget: Mapping[str, Any], expected: int) -> int:
    """The integer ``minAvailable`` that enforces ``budget`` for ``expected`` pods."""
    key, value = normalized(budget)
    if isinstance(value, str):  # a percentage of the expected pods
        share = int(value.rstrip("%")) * expected / 100
        count = math.ceil(share)
    else:
        count = value
    if key == "minAvailable":
        return count
    return max(0, expected - count)


def pdb_name(job: Mapping[str, Any]) -> str:
    """The PDB of a Job has the Job's name."""
    return str(job["metadata"]["name"])


def pdb_manifest(job: Mapping[str, Any], budget: Mapping[str, Any]) -> dict[str, Any]:
    """The PodDisruptionBudget of ``job`` (as the API server returned it: name, uid, labels)."""
    meta = job["metadata"]
    key, value = normalized(budget)
    expected = expected_pods(job)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": pdb_name(job),
            "labels": dict(meta.get("labels") or {}),
            "annotations": {"kbatch.io/disruption-budget": f"{key}={value} of {expected} pods"},
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": {
            "minAvailable": min_available(budget, expected),
            "selector": {"matchLabels": {CONTROLLER_UID_LABEL: meta["uid"]}},
        },
    }


def owned_by(pdb: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """``pdb`` names ``job`` (by uid) as its owner."""
    uid = job["metadata"]["uid"]
    refs = (pdb.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)
