"""The success policy: ``spec.successPolicy`` compiled from the typed helpers, and checked.

Compiled (:func:`compile_success_policy`):

- ``min_success_ratio`` -> ``succeededCount = ceil(ratio * n)`` where ``n`` is ``completions``,
  or the size of ``success_indexes`` when both are given (the ratio then applies to that set).
- ``success_indexes`` -> ``succeededIndexes``.

For a resumed Job (``index_map``: the logical indexes it runs) the success rule is translated to
Job-local indexes: the indexes completed before count as already succeeded.

Checked (used by :mod:`airflow_provider_kbatch.spec.validation`): the typed helpers
(:func:`check_success_helpers`) and a raw ``success_policy`` (:func:`check_raw_success_policy`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from airflow_provider_kbatch.spec.checkbase import dig, int_at_least, is_int
from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.intervals import IndexSet, map_logical
from airflow_provider_kbatch.spec.stage import StageSpec

MAX_SUCCESS_POLICY_RULES = 20
MAX_SUCCEEDED_INDEXES_LENGTH = 64 * 1024


# --------------------------------------------------------------------------- compile


def ratio_count(ratio: float, total: int) -> int:
    """``ceil(ratio * total)`` computed on the decimal value of ``ratio``.

    ``0.07 * 100`` is ``7.000000000000001`` in binary floating point (ceil: 8); the decimal
    product is exactly 7.
    """
    return math.ceil(Decimal(repr(float(ratio))) * total)


def required_successes(spec: StageSpec) -> int | None:
    """How many logical indexes must succeed under the typed success helpers (None: all)."""
    if spec.min_success_ratio is None:
        return None
    if spec.success_indexes is not None:
        return ratio_count(spec.min_success_ratio, len(IndexSet.parse(spec.success_indexes)))
    return ratio_count(spec.min_success_ratio, spec.completions)


def compile_success_policy(spec: StageSpec, index_map: IndexSet | None = None) -> dict[str, Any] | None:
    """``spec.successPolicy`` for this stage (None when all indexes must succeed).

    With ``index_map`` (a resumed Job running those logical indexes), the indexes outside the
    map are taken as already succeeded: ``succeededIndexes`` becomes the Job-local positions of
    the required indexes still to run, and ``succeededCount`` is reduced by the required
    indexes already done (at least 1, so the Job still needs one success of its own).
    A raw ``success_policy`` is used as given and not translated.
    """
    if spec.success_policy is not None:
        return copy.deepcopy(dict(spec.success_policy))
    if spec.min_success_ratio is None and spec.success_indexes is None:
        return None
    logical_total = IndexSet.full(spec.completions)
    wanted = IndexSet.parse(spec.success_indexes) if spec.success_indexes is not None else None
    count = required_successes(spec)
    running = logical_total if index_map is None else index_map
    rule: dict[str, Any] = {}
    if wanted is not None:
        rule["succeededIndexes"] = str(map_logical(wanted, index_map))
    if count is not None:
        scope = wanted if wanted is not None else logical_total
        already_done = len(scope - running)
        rule["succeededCount"] = max(1, count - already_done)
    if not rule.get("succeededIndexes", "x"):
        # every wanted index already succeeded: any one success of this Job completes the stage
        rule = {"succeededCount": 1}
    return {"rules": [rule]}


# --------------------------------------------------------------------------- checks


def _parse_indexes(p: ProblemCollector, field: str, text: Any, completions: Any) -> IndexSet | None:
    if not isinstance(text, str):
        p.add(
            field,
            f"must be a string like '0-2,5', got {text!r}",
            "Write the indexes as a string, e.g. '0-9,20'.",
        )
        return None
    if len(text) > MAX_SUCCEEDED_INDEXES_LENGTH:
        p.add(
            field,
            f"is {len(text)} characters long, more than {MAX_SUCCEEDED_INDEXES_LENGTH}",
            "Use ranges ('0-999').",
        )
        return None
    try:
        indexes = IndexSet.parse(text)
    except ValueError as exc:
        p.add(field, str(exc), "Write indexes like '0-2,5' (ranges and single indexes, comma-separated).")
        return None
    if not indexes:
        p.add(field, "is empty", "List at least one index, or drop it.")
        return None
    if is_int(completions) and indexes.nth(-1) >= completions:
        p.add(
            field,
            f"index {indexes.nth(-1)} is not below completions ({completions})",
            f"Use indexes 0..{completions - 1}.",
        )
        return None
    return indexes


def check_success_helpers(spec: StageSpec, p: ProblemCollector) -> None:
    ratio = spec.min_success_ratio
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1
    ):
        p.add(
            "min_success_ratio",
            f"must be a number in (0, 1], got {ratio!r}",
            "Pass e.g. min_success_ratio=0.95.",
        )
    if spec.success_indexes is not None:
        _parse_indexes(p, "success_indexes", spec.success_indexes, spec.completions)
    if spec.success_policy is not None:
        for field in ("min_success_ratio", "success_indexes"):
            if getattr(spec, field) is not None:
                p.add(
                    field,
                    "cannot be combined with a raw success_policy",
                    "Express it in success_policy, or drop success_policy.",
                )


def check_raw_success_policy(spec: StageSpec, p: ProblemCollector) -> None:
    policy = spec.success_policy
    if policy is None:
        return
    rules = dig(policy, "rules")
    if not isinstance(rules, list) or not rules:
        p.add(
            "success_policy",
            "must be a dict with a non-empty 'rules' list",
            "Pass success_policy={'rules': [{'succeededCount': 9}]}.",
        )
        return
    if len(rules) > MAX_SUCCESS_POLICY_RULES:
        p.add(
            "success_policy.rules",
            f"has {len(rules)} rules, more than {MAX_SUCCESS_POLICY_RULES}",
            "Use fewer rules.",
        )
    for i, rule in enumerate(rules):
        field = f"success_policy.rules[{i}]"
        if not isinstance(rule, Mapping) or (
            rule.get("succeededIndexes") is None and rule.get("succeededCount") is None
        ):
            p.add(field, "needs succeededIndexes or succeededCount", "Add one of them.")
            continue
        indexes = None
        if rule.get("succeededIndexes") is not None:
            indexes = _parse_indexes(
                p, f"{field}.succeededIndexes", rule["succeededIndexes"], spec.completions
            )
        count = rule.get("succeededCount")
        if count is not None:
            _check_succeeded_count(spec, p, f"{field}.succeededCount", count, indexes)


def _check_succeeded_count(
    spec: StageSpec, p: ProblemCollector, field: str, count: Any, indexes: IndexSet | None
) -> None:
    if not int_at_least(p, field, count, 0, "Pass a count of indexes."):
        return
    if is_int(spec.completions) and count > spec.completions:
        p.add(
            field,
            f"{count} is more than completions ({spec.completions})",
            f"Use {spec.completions} or less.",
        )
    if indexes is not None and count > len(indexes):
        p.add(
            field,
            f"{count} is more than the {len(indexes)} indexes in succeededIndexes",
            f"Use {len(indexes)} or less.",
        )
