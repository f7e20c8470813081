"""The pod failure policy: ``spec.podFailurePolicy`` compiled from the typed helpers, and checked.

Compiled (:func:`compile_pod_failure_policy`):

- ``ignore_disruptions`` -> ``{action: Ignore, onPodConditions: [{type: DisruptionTarget,
  status: "True"}]}``, first, so an evicted or preempted pod never burns a retry even if it also
  exited with a listed code.
- ``fail_on_exit_codes`` -> ``{action: FailJob|FailIndex, onExitCodes: {containerName,
  operator: In, values: sorted, unique}}``.

Checked (used by :mod:`airflow_provider_kbatch.spec.validation`, each check adds every problem
to a :class:`ProblemCollector`): the typed helpers (:func:`check_exit_code_helpers`, with
``pod_replacement_policy``, which the API server ties to the pod failure policy) and a raw
``pod_failure_policy`` (:func:`check_raw_pod_failure_policy`), as ``pkg/apis/batch/validation``
does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.checkbase import dig, is_int, template_container_names
from airflow_provider_kbatch.spec.errors import ProblemCollector
from airflow_provider_kbatch.spec.stage import StageSpec

DISRUPTION_TARGET = "DisruptionTarget"

IGNORE_DISRUPTIONS_RULE: dict[str, Any] = {
    "action": "Ignore",
    "onPodConditions": [{"type": DISRUPTION_TARGET, "status": "True"}],
}

MAX_POD_FAILURE_POLICY_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_CONDITION_PATTERNS = 20

_ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")


# --------------------------------------------------------------------------- compile


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


# --------------------------------------------------------------------------- checks


def check_exit_code_helpers(spec: StageSpec, p: ProblemCollector) -> None:
    action = spec.fail_on_exit_codes_action
    if action not in ("FailJob", "FailIndex"):
        p.add(
            "fail_on_exit_codes_action",
            f"{action!r} is not supported",
            "Use 'FailJob' (default) or 'FailIndex'.",
        )
    codes = spec.fail_on_exit_codes
    if not isinstance(codes, tuple):
        p.add(
            "fail_on_exit_codes", f"must be a list of ints, got {codes!r}", "Pass fail_on_exit_codes=[2, 42]."
        )
        return
    for code in codes:
        _check_exit_code(p, "fail_on_exit_codes", code, operator="In")
    if len(set(codes)) > MAX_EXIT_CODE_VALUES:
        p.add(
            "fail_on_exit_codes",
            f"lists {len(set(codes))} codes, more than {MAX_EXIT_CODE_VALUES}",
            "List fewer codes.",
        )
    if codes and action == "FailIndex" and spec.backoff_limit_per_index is None:
        p.add(
            "fail_on_exit_codes_action",
            "'FailIndex' needs backoff_limit_per_index",
            "Pass backoff_limit_per_index=N (retries per index), or use fail_on_exit_codes_action='FailJob'.",
        )
    if spec.pod_failure_policy is not None:
        if codes:
            p.add(
                "fail_on_exit_codes",
                "cannot be combined with a raw pod_failure_policy",
                "Add the exit-code rule to pod_failure_policy yourself, or drop pod_failure_policy.",
            )
        if spec.ignore_disruptions is True:
            p.add(
                "ignore_disruptions",
                "cannot be combined with a raw pod_failure_policy",
                "Add an Ignore rule on the DisruptionTarget condition to pod_failure_policy, or drop pod_failure_policy.",
            )
    if spec.pod_replacement_policy not in (None, "Failed", "TerminatingOrFailed"):
        p.add(
            "pod_replacement_policy",
            f"{spec.pod_replacement_policy!r} is not supported",
            "Use 'Failed' or 'TerminatingOrFailed'.",
        )
    elif spec.pod_replacement_policy == "TerminatingOrFailed" and has_pod_failure_policy(spec):
        p.add(
            "pod_replacement_policy",
            "'TerminatingOrFailed' is not allowed with a pod failure policy (ignore_disruptions, fail_on_exit_codes or "
            "pod_failure_policy)",
            "Use pod_replacement_policy='Failed' or leave it unset.",
        )


def _check_exit_code(p: ProblemCollector, field: str, code: Any, *, operator: str) -> None:
    if not is_int(code):
        p.add(field, f"exit code {code!r} is not an int", "List exit codes as ints, e.g. [2, 42].")
    elif code == 0 and operator == "In":
        p.add(field, "exit code 0 means success and cannot be matched with the In operator", "Remove 0.")
    elif not 0 <= code <= 255:
        p.add(
            field,
            f"exit code {code} is outside 0..255",
            "Container exit codes are 0..255 (128+N for signal N).",
        )


def has_pod_failure_policy(spec: StageSpec) -> bool:
    return (
        spec.pod_failure_policy is not None
        or bool(spec.fail_on_exit_codes)
        or spec.effective_ignore_disruptions
    )


def _raw_rules(spec: StageSpec) -> list[Any]:
    rules = dig(spec.pod_failure_policy, "rules")
    return rules if isinstance(rules, list) else []


def raw_actions(spec: StageSpec) -> set[str]:
    return {str(r.get("action")) for r in _raw_rules(spec) if isinstance(r, Mapping)}


def check_raw_pod_failure_policy(spec: StageSpec, p: ProblemCollector) -> None:
    pfp = spec.pod_failure_policy
    if pfp is None:
        return
    if not isinstance(pfp, Mapping) or not isinstance(pfp.get("rules"), list):
        p.add(
            "pod_failure_policy",
            "must be a dict with a 'rules' list",
            "Pass pod_failure_policy={'rules': [...]}.",
        )
        return
    rules = pfp["rules"]
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        p.add(
            "pod_failure_policy.rules",
            f"has {len(rules)} rules, more than {MAX_POD_FAILURE_POLICY_RULES}",
            "Merge or drop rules.",
        )
    containers = template_container_names(spec)
    for i, rule in enumerate(rules):
        _check_raw_rule(spec, p, f"pod_failure_policy.rules[{i}]", rule, containers)


def _check_raw_rule(
    spec: StageSpec, p: ProblemCollector, field: str, rule: Any, containers: set[str]
) -> None:
    if not isinstance(rule, Mapping):
        p.add(
            field,
            f"must be a dict, got {rule!r}",
            "Each rule is {'action': ..., 'onExitCodes'|'onPodConditions': ...}.",
        )
        return
    action = rule.get("action")
    if action not in _ACTIONS:
        p.add(f"{field}.action", f"{action!r} is not supported", f"Use one of {', '.join(_ACTIONS)}.")
    elif action == "FailIndex" and spec.backoff_limit_per_index is None:
        p.add(
            f"{field}.action",
            "'FailIndex' needs backoff_limit_per_index",
            "Pass backoff_limit_per_index=N as well.",
        )
    on_codes, on_conds = rule.get("onExitCodes"), rule.get("onPodConditions")
    if (on_codes is None) == (not on_conds):
        p.add(
            field,
            "needs exactly one of onExitCodes and onPodConditions",
            "Split it into two rules, or add a requirement.",
        )
    if on_codes is not None:
        _check_on_exit_codes(p, f"{field}.onExitCodes", on_codes, containers)
    if on_conds:
        _check_on_pod_conditions(p, f"{field}.onPodConditions", on_conds)


def _check_on_exit_codes(p: ProblemCollector, field: str, req: Any, containers: set[str]) -> None:
    if not isinstance(req, Mapping):
        p.add(field, f"must be a dict, got {req!r}", "Use {'operator': 'In', 'values': [42]}.")
        return
    operator = req.get("operator")
    if operator not in ("In", "NotIn"):
        p.add(f"{field}.operator", f"{operator!r} is not supported", "Use 'In' or 'NotIn'.")
    name = req.get("containerName")
    if name is not None and name not in containers:
        p.add(
            f"{field}.containerName",
            f"{name!r} is not a container of the pod",
            f"Use one of {sorted(containers)}.",
        )
    values = req.get("values")
    if not isinstance(values, list) or not values:
        p.add(f"{field}.values", "needs at least one exit code", "Pass 'values': [42].")
        return
    if len(values) > MAX_EXIT_CODE_VALUES:
        p.add(
            f"{field}.values",
            f"has {len(values)} values, more than {MAX_EXIT_CODE_VALUES}",
            "List fewer codes.",
        )
    for code in values:
        _check_exit_code(p, f"{field}.values", code, operator=str(operator))
    ints = [v for v in values if is_int(v)]
    dupes = sorted({v for v in ints if ints.count(v) > 1})
    if dupes:
        p.add(f"{field}.values", f"lists {dupes} more than once", "List each exit code once.")
    elif ints != sorted(ints):
        p.add(f"{field}.values", "must be sorted in ascending order", f"Write them as {sorted(ints)}.")


def _check_on_pod_conditions(p: ProblemCollector, field: str, patterns: Any) -> None:
    if not isinstance(patterns, list):
        p.add(
            field,
            f"must be a list, got {patterns!r}",
            "Use [{'type': 'DisruptionTarget', 'status': 'True'}].",
        )
        return
    if len(patterns) > MAX_CONDITION_PATTERNS:
        p.add(
            field, f"has {len(patterns)} patterns, more than {MAX_CONDITION_PATTERNS}", "Use fewer patterns."
        )
    for j, pattern in enumerate(patterns):
        if (
            not isinstance(pattern, Mapping)
            or not isinstance(pattern.get("type"), str)
            or not pattern.get("type")
        ):
            p.add(f"{field}[{j}].type", "is missing", "Name a pod condition type, e.g. 'DisruptionTarget'.")
            continue
        if pattern.get("status", "True") not in ("True", "False", "Unknown"):
            p.add(
                f"{field}[{j}].status",
                f"{pattern.get('status')!r} is not supported",
                "Use the string 'True', 'False' or 'Unknown'.",
            )
