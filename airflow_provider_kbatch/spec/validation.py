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

from typing import Any

from airflow_provider_kbatch.spec.checkbase import dig, int_at_least, is_int
from airflow_provider_kbatch.spec.disruption import check_disruption_budget
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.metachecks import (
    check_metadata,
    check_scheduling,
    check_security,
    check_volumes,
)
from airflow_provider_kbatch.spec.names import is_dns1123_label
from airflow_provider_kbatch.spec.pod_failure_policy import (
    check_exit_code_helpers,
    check_raw_pod_failure_policy,
    has_pod_failure_policy,
    raw_actions,
)
from airflow_provider_kbatch.spec.podchecks import check_container, check_env, check_resources
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.spec.success_policy import check_raw_success_policy, check_success_helpers
from airflow_provider_kbatch.spec.templatechecks import check_json, check_template

MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
LIMIT_FOR_HIGH_COMPLETIONS = 10_000

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
        check_exit_code_helpers,
        check_raw_pod_failure_policy,
        _check_restart_policy,
        check_success_helpers,
        check_raw_success_policy,
        check_disruption_budget,
    ):
        check(spec, p)
    if server_version is not None:
        _check_server_version(spec, server_version, p)
    return list(p.errors)


# --------------------------------------------------------------------------- counts


def _check_counts(spec: StageSpec, p: ProblemCollector) -> None:
    int_at_least(
        p,
        "completions",
        spec.completions,
        1,
        "Pass completions=1 or more (the number of indexes).",
        optional=False,
    )
    if (
        int_at_least(
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
    int_at_least(
        p, "backoff_limit", spec.backoff_limit, 0, "Pass backoff_limit=0 or more (pod retries for the Job)."
    )
    int_at_least(
        p,
        "backoff_limit_per_index",
        spec.backoff_limit_per_index,
        0,
        "Pass backoff_limit_per_index=0 or more.",
    )
    int_at_least(p, "max_failed_indexes", spec.max_failed_indexes, 0, "Pass max_failed_indexes=0 or more.")
    int_at_least(
        p,
        "active_deadline_seconds",
        spec.active_deadline_seconds,
        1,
        "Pass a positive number of seconds, or None for no deadline.",
    )
    int_at_least(
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
    if "FailIndex" in raw_actions(spec):
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


def _check_restart_policy(spec: StageSpec, p: ProblemCollector) -> None:
    restart = dig(spec.job_template, "spec", "template", "spec", "restartPolicy")
    if restart != "OnFailure":
        return
    field = "job_template.spec.template.spec.restartPolicy"
    if has_pod_failure_policy(spec):
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


# --------------------------------------------------------------------------- server version


def _version_fields(spec: StageSpec) -> list[tuple[str, str]]:
    """``(operator argument, API feature)`` pairs this spec relies on."""
    used: list[tuple[str, str]] = []
    for field in ("backoff_limit_per_index", "max_failed_indexes"):
        if getattr(spec, field) is not None:
            used.append((field, "backoffLimitPerIndex"))
    if spec.fail_on_exit_codes and spec.fail_on_exit_codes_action == "FailIndex":
        used.append(("fail_on_exit_codes_action", "backoffLimitPerIndex"))
    if "FailIndex" in raw_actions(spec):
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
