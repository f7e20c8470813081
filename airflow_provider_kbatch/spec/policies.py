"""Compile the typed failure/success helpers into ``podFailurePolicy`` / ``successPolicy``.

- ``ignore_disruptions`` -> ``{action: Ignore, onPodConditions: [{type: DisruptionTarget,
  status: "True"}]}``, first, so an evicted or preempted pod never burns a retry even if it also
  exited with a listed code.
- ``fail_on_exit_codes`` -> ``{action: FailJob|FailIndex, onExitCodes: {containerName,
  operator: In, values: sorted, unique}}``.
- ``min_success_ratio`` -> ``succeededCount = ceil(ratio * n)`` where ``n`` is ``completions``,
  or the size of ``success_indexes`` when both are given (the ratio then applies to that set).
- ``success_indexes`` -> ``succeededIndexes``.

For a resumed Job (``index_map``: the logical indexes it runs) the success rule is translated to
Job-local indexes: the indexes completed before count as already succeeded.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

from airflow_provider_kbatch.spec.intervals import IndexSet, map_logical
from airflow_provider_kbatch.spec.stage import StageSpec

DISRUPTION_TARGET = "DisruptionTarget"

IGNORE_DISRUPTIONS_RULE: dict[str, Any] = {
    "action": "Ignore",
    "onPodConditions": [{"type": DISRUPTION_TARGET, "status": "True"}],
}


def exit_code_rule(spec: StageSpec) -> dict[str, Any] | None:
    """The rule for ``fail_on_exit_codes`` (None when no codes are listed)."""
    if not spec.fail_on_exit_codes:
        return None
    return {
        "action": spec.fail_on_exit_codes_action,
        "onExitCodes": {
            "containerName": spec.container_name,
            "operator": "In",
            "values": sorted(set(spec.fail_on_exit_codes)),
        },
    }


def compile_pod_failure_policy(spec: StageSpec) -> dict[str, Any] | None:
    """``spec.podFailurePolicy`` for this stage, or None for none.

    A raw ``pod_failure_policy`` is used as given (a copy); validation rejects mixing it with
    ``fail_on_exit_codes`` or an explicit ``ignore_disruptions=True``.
    """
    if spec.pod_failure_policy is not None:
        return copy.deepcopy(dict(spec.pod_failure_policy))
    rules: list[dict[str, Any]] = []
    if spec.effective_ignore_disruptions:
        rules.append(copy.deepcopy(IGNORE_DISRUPTIONS_RULE))
    rule = exit_code_rule(spec)
    if rule is not None:
        rules.append(rule)
    return {"rules": rules} if rules else None


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
