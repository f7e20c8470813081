"""Validate a :class:`StageSpec` before anything is sent to the API server.

:func:`validate_stage` collects *every* problem and raises once: a :class:`KbatchSpecError` for a
single problem, a :class:`KbatchSpecErrors` listing all of them otherwise. Each message names the
field as the DAG author wrote it (the operator argument, e.g. ``backoff_limit_per_index``) and
says how to fix it. The rules follow the API server's Job validation
(``pkg/apis/batch/validation``) plus kbatch's own (secrets referenced, restricted pods, ...), so a
mistake fails at parse/submit time with a readable message instead of a 422 later.

With ``server_version=(major, minor)``, fields the server is too old to honour are reported: an
older API server silently *drops* unknown or gated-off Job fields, which would change the
semantics of the stage without a word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import is_dns1123_label
from airflow_provider_kbatch.spec.podchecks import (
    check_container,
    check_env,
    check_json,
    check_metadata,
    check_resources,
    check_scheduling,
    check_security,
    check_template,
    check_volumes,
    dig,
    is_int,
    template_container_names,
)
from airflow_provider_kbatch.spec.stage import StageSpec

MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
LIMIT_FOR_HIGH_COMPLETIONS = 10_000
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_CONDITION_PATTERNS = 20
MAX_SUCCESS_POLICY_RULES = 20
MAX_SUCCEEDED_INDEXES_LENGTH = 64 * 1024

#: The first API server minor version (1.x) where each Job field works without feature gates
#: (beta, on by default; GA later). Older servers drop the field silently.
#: podFailurePolicy: alpha 1.25, beta 1.26, GA 1.31 (DisruptionTarget pod condition: 1.26).
#: backoffLimitPerIndex / maxFailedIndexes / FailIndex: alpha 1.28, beta 1.29, GA 1.33.
#: successPolicy: alpha 1.30, beta 1.31, GA 1.33. podReplacementPolicy: alpha 1.28, beta 1.29, GA 1.34.
FEATURE_MIN_VERSION: dict[str, tuple[int, int]] = {
    "podFailurePolicy": (1, 26),
    "backoffLimitPerIndex": (1, 29),
    "successPolicy": (1, 31),
    "podReplacementPolicy": (1, 29),
}

_ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")


def validate_stage(spec: StageSpec, server_version: tuple[int, int] | None = None) -> None:
    """Raise :class:`KbatchSpecError` (one problem) or :class:`KbatchSpecErrors` (several)."""
    p = ProblemCollector()
    p.extend(stage_problems(spec, server_version))
    p.raise_if_any()


def validate_server_version(spec: StageSpec, server_version: tuple[int, int]) -> None:
    """Only the server-version checks of :func:`validate_stage`, for a spec already validated:
    raise when the cluster would silently drop a field the stage relies on."""
    p = ProblemCollector()
    _check_server_version(spec, server_version, p)
    p.raise_if_any()


def namespace_problem(namespace: Any, *, source: str = "") -> KbatchSpecError | None:
    """The problem with a namespace name (a DNS-1123 label), or None. ``source`` says where the
    name came from when it was not the ``namespace`` argument (e.g. a connection's extra)."""
    where = f" ({source})" if source else ""
    fix = (
        "Pass namespace='<name>' (lower-case letters, digits and '-', at most 63 characters), "
        "or namespace=None to use the connection's 'namespace' extra (else 'default')."
    )
    if not isinstance(namespace, str):
        return KbatchSpecError("namespace", f"must be a string, got {type(namespace).__name__}{where}", fix)
    if not namespace.strip():
        return KbatchSpecError("namespace", f"is empty (after templating){where}", fix)
    if not is_dns1123_label(namespace):
        return KbatchSpecError("namespace", f"{namespace!r} is not a valid namespace name{where}", fix)
    return None


def stage_problems(spec: StageSpec, server_version: tuple[int, int] | None = None) -> list[KbatchSpecError]:
    """Every problem with ``spec``, without raising (empty list: valid)."""
    if not isinstance(spec, StageSpec):
        raise TypeError(f"validate_stage() needs a StageSpec, got {type(spec).__name__}")
    p = ProblemCollector()
    for check in (
        check_container,
        check_env,
        check_resources,
        check_metadata,
        check_scheduling,
        check_volumes,
        check_security,
        check_template,
        check_json,
        _check_counts,
        _check_indexed_fields,
        _check_exit_code_helpers,
        _check_raw_pod_failure_policy,
        _check_restart_policy,
        _check_success_helpers,
        _check_raw_success_policy,
    ):
        check(spec, p)
    if server_version is not None:
        _check_server_version(spec, server_version, p)
    return list(p.errors)


# --------------------------------------------------------------------------- counts


def _int_at_least(
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


def _check_counts(spec: StageSpec, p: ProblemCollector) -> None:
    _int_at_least(
        p,
        "completions",
        spec.completions,
        1,
        "Pass completions=1 or more (the number of indexes).",
        optional=False,
    )
    if (
        _int_at_least(
            p,
            "parallelism",
            spec.parallelism,
            1,
            "Pass parallelism=1 or more; use suspend=True to hold a Job.",
        )
        and spec.is_indexed
        and spec.parallelism > MAX_PARALLELISM_INDEXED  # type: ignore[operator]
    ):
        p.add(
            "parallelism",
            f"{spec.parallelism} is more than {MAX_PARALLELISM_INDEXED}, the limit for Indexed Jobs",
            f"Pass parallelism={MAX_PARALLELISM_INDEXED} or less.",
        )
    _int_at_least(
        p, "backoff_limit", spec.backoff_limit, 0, "Pass backoff_limit=0 or more (pod retries for the Job)."
    )
    _int_at_least(
        p,
        "backoff_limit_per_index",
        spec.backoff_limit_per_index,
        0,
        "Pass backoff_limit_per_index=0 or more.",
    )
    _int_at_least(p, "max_failed_indexes", spec.max_failed_indexes, 0, "Pass max_failed_indexes=0 or more.")
    _int_at_least(
        p,
        "active_deadline_seconds",
        spec.active_deadline_seconds,
        1,
        "Pass a positive number of seconds, or None for no deadline.",
    )
    _int_at_least(
        p,
        "ttl_seconds_after_finished",
        spec.ttl_seconds_after_finished,
        0,
        "Pass 0 or more seconds (default 86400), or None to keep finished Jobs forever.",
    )
    if not isinstance(spec.suspend, bool):
        p.add(
            "suspend", f"must be True or False, got {spec.suspend!r}", "Pass suspend=True or suspend=False."
        )
    if spec.ignore_disruptions not in (None, True, False):
        p.add(
            "ignore_disruptions",
            f"must be True, False or None, got {spec.ignore_disruptions!r}",
            "Pass a bool.",
        )


# --------------------------------------------------------------------------- Indexed-only fields


def _per_index_fields(spec: StageSpec) -> list[str]:
    used = [f for f in ("backoff_limit_per_index", "max_failed_indexes") if getattr(spec, f) is not None]
    used += [
        f for f in ("min_success_ratio", "success_indexes", "success_policy") if getattr(spec, f) is not None
    ]
    if spec.fail_on_exit_codes and spec.fail_on_exit_codes_action == "FailIndex":
        used.append("fail_on_exit_codes_action")
    if "FailIndex" in _raw_actions(spec):
        used.append("pod_failure_policy")
    return used


def _check_indexed_fields(spec: StageSpec, p: ProblemCollector) -> None:
    if spec.completion_mode not in (None, "Indexed", "NonIndexed"):
        p.add(
            "completion_mode",
            f"{spec.completion_mode!r} is not supported",
            "Use 'Indexed' (default) or 'NonIndexed'.",
        )
        return
    if not spec.is_indexed:
        for field in _per_index_fields(spec):
            p.add(
                field,
                "only works with completion_mode='Indexed'",
                f"Remove completion_mode='NonIndexed' (Indexed is the default), or remove {field}.",
            )
        return
    if is_int(spec.completions):
        _check_high_completions(spec, p)
    mfi = spec.max_failed_indexes
    if not is_int(mfi) or not is_int(spec.completions):
        return
    if spec.backoff_limit_per_index is None:
        p.add(
            "max_failed_indexes",
            "needs backoff_limit_per_index",
            "Pass backoff_limit_per_index=N as well (retries per index).",
        )
    if mfi > spec.completions:  # type: ignore[operator]
        p.add(
            "max_failed_indexes",
            f"{mfi} is more than completions ({spec.completions})",
            f"Pass max_failed_indexes={spec.completions} or less.",
        )
    if mfi > MAX_FAILED_INDEXES:  # type: ignore[operator]
        p.add(
            "max_failed_indexes",
            f"{mfi} is more than {MAX_FAILED_INDEXES}",
            f"Pass max_failed_indexes={MAX_FAILED_INDEXES} or less.",
        )


def _check_high_completions(spec: StageSpec, p: ProblemCollector) -> None:
    if spec.backoff_limit_per_index is None or spec.completions <= COMPLETIONS_SOFT_LIMIT:
        return
    why = f"with completions above {COMPLETIONS_SOFT_LIMIT} and backoff_limit_per_index"
    mfi = spec.max_failed_indexes
    if mfi is None or (is_int(mfi) and mfi > LIMIT_FOR_HIGH_COMPLETIONS):
        p.add(
            "max_failed_indexes",
            f"must be set to at most {LIMIT_FOR_HIGH_COMPLETIONS} {why}",
            f"Pass max_failed_indexes<={LIMIT_FOR_HIGH_COMPLETIONS}.",
        )
    if is_int(spec.parallelism) and spec.parallelism > LIMIT_FOR_HIGH_COMPLETIONS:  # type: ignore[operator]
        p.add(
            "parallelism",
            f"must be at most {LIMIT_FOR_HIGH_COMPLETIONS} {why}",
            f"Pass parallelism<={LIMIT_FOR_HIGH_COMPLETIONS}.",
        )


# --------------------------------------------------------------------------- podFailurePolicy


def _check_exit_code_helpers(spec: StageSpec, p: ProblemCollector) -> None:
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
    elif spec.pod_replacement_policy == "TerminatingOrFailed" and _has_pod_failure_policy(spec):
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


def _has_pod_failure_policy(spec: StageSpec) -> bool:
    return (
        spec.pod_failure_policy is not None
        or bool(spec.fail_on_exit_codes)
        or spec.effective_ignore_disruptions
    )


def _raw_rules(spec: StageSpec) -> list[Any]:
    rules = dig(spec.pod_failure_policy, "rules")
    return rules if isinstance(rules, list) else []


def _raw_actions(spec: StageSpec) -> set[str]:
    return {str(r.get("action")) for r in _raw_rules(spec) if isinstance(r, Mapping)}


def _check_raw_pod_failure_policy(spec: StageSpec, p: ProblemCollector) -> None:
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


def _check_restart_policy(spec: StageSpec, p: ProblemCollector) -> None:
    restart = dig(spec.job_template, "spec", "template", "spec", "restartPolicy")
    if restart != "OnFailure":
        return
    field = "job_template.spec.template.spec.restartPolicy"
    if _has_pod_failure_policy(spec):
        p.add(
            field,
            "'OnFailure' cannot be used with a pod failure policy (ignore_disruptions is on by default)",
            "Remove restartPolicy (kbatch uses 'Never'), or pass ignore_disruptions=False without "
            "fail_on_exit_codes or pod_failure_policy.",
        )
    if spec.backoff_limit_per_index is not None:
        p.add(
            field,
            "'OnFailure' cannot be used with backoff_limit_per_index",
            "Remove restartPolicy (kbatch uses 'Never').",
        )


# --------------------------------------------------------------------------- successPolicy


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


def _check_success_helpers(spec: StageSpec, p: ProblemCollector) -> None:
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


def _check_raw_success_policy(spec: StageSpec, p: ProblemCollector) -> None:
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
    if not _int_at_least(p, field, count, 0, "Pass a count of indexes."):
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


# --------------------------------------------------------------------------- server version


def _version_fields(spec: StageSpec) -> list[tuple[str, str]]:
    """``(operator argument, API feature)`` pairs this spec relies on."""
    used: list[tuple[str, str]] = []
    for field in ("backoff_limit_per_index", "max_failed_indexes"):
        if getattr(spec, field) is not None:
            used.append((field, "backoffLimitPerIndex"))
    if spec.fail_on_exit_codes and spec.fail_on_exit_codes_action == "FailIndex":
        used.append(("fail_on_exit_codes_action", "backoffLimitPerIndex"))
    if "FailIndex" in _raw_actions(spec):
        used.append(("pod_failure_policy", "backoffLimitPerIndex"))
    for field in ("min_success_ratio", "success_indexes", "success_policy"):
        if getattr(spec, field) is not None:
            used.append((field, "successPolicy"))
    if spec.fail_on_exit_codes:
        used.append(("fail_on_exit_codes", "podFailurePolicy"))
    if spec.pod_failure_policy is not None:
        used.append(("pod_failure_policy", "podFailurePolicy"))
    if spec.ignore_disruptions is True:
        # unset (the default) is dropped quietly by an old server: nothing was asked for
        used.append(("ignore_disruptions", "podFailurePolicy"))
    if spec.pod_replacement_policy is not None:
        used.append(("pod_replacement_policy", "podReplacementPolicy"))
    return used


def _check_server_version(spec: StageSpec, server_version: tuple[int, int], p: ProblemCollector) -> None:
    for field, feature in _version_fields(spec):
        need = FEATURE_MIN_VERSION[feature]
        if tuple(server_version) < need:
            have = f"{server_version[0]}.{server_version[1]}"
            p.add(
                field,
                f"needs Job {feature}, available from Kubernetes {need[0]}.{need[1]}; the cluster runs {have} "
                "and would silently ignore it",
                f"Remove {field}, or run the stage on a cluster of {need[0]}.{need[1]} or newer.",
            )
