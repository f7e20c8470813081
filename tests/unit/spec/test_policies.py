from __future__ import annotations

import pytest

from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.pod_failure_policy import compile_pod_failure_policy
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.spec.success_policy import (
    compile_success_policy,
    ratio_count,
    required_successes,
)

IGNORE = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def _spec(**kwargs: object) -> StageSpec:
    return StageSpec(image="i", completions=10, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"rules": [IGNORE]}),
        ({"ignore_disruptions": False}, None),
        (
            {"fail_on_exit_codes": [42, 3, 42]},
            {
                "rules": [
                    IGNORE,
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "main", "operator": "In", "values": [3, 42]},
                    },
                ]
            },
        ),
        (
            {
                "fail_on_exit_codes": [7],
                "fail_on_exit_codes_action": "FailIndex",
                "backoff_limit_per_index": 1,
                "container_name": "work",
                "ignore_disruptions": False,
            },
            {
                "rules": [
                    {
                        "action": "FailIndex",
                        "onExitCodes": {"containerName": "work", "operator": "In", "values": [7]},
                    }
                ]
            },
        ),
        (
            {
                "pod_failure_policy": {
                    "rules": [{"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}}]
                }
            },
            {"rules": [{"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}}]},
        ),
    ],
)
def test_compile_pod_failure_policy(kwargs: dict, expected: dict | None) -> None:
    assert compile_pod_failure_policy(_spec(**kwargs)) == expected


def test_ignore_rule_comes_first_and_raw_policy_is_copied() -> None:
    policy = compile_pod_failure_policy(_spec(fail_on_exit_codes=[1]))
    assert policy is not None and policy["rules"][0]["action"] == "Ignore"
    raw = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}
    compiled = compile_pod_failure_policy(_spec(pod_failure_policy=raw))
    assert compiled == raw
    compiled["rules"].clear()  # type: ignore[index]
    assert raw["rules"]


@pytest.mark.parametrize(
    ("ratio", "total", "count"),
    [
        (0.7, 10, 7),
        (0.07, 100, 7),
        (0.14, 100, 14),
        (0.55, 100, 55),
        (0.9, 10, 9),
        (0.95, 1000, 950),
        (0.333, 3, 1),
        (0.34, 3, 2),
        (1, 7, 7),
        (1.0, 100_000, 100_000),
        (0.01, 10, 1),
        (0.29, 100, 29),
    ],
)
def test_ratio_count_has_no_float_surprises(ratio: float, total: int, count: int) -> None:
    assert ratio_count(ratio, total) == count


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, None),
        ({"min_success_ratio": 0.7}, {"rules": [{"succeededCount": 7}]}),
        ({"success_indexes": "0-2,5"}, {"rules": [{"succeededIndexes": "0-2,5"}]}),
        ({"success_indexes": "5,0-2"}, {"rules": [{"succeededIndexes": "0-2,5"}]}),
        (
            {"success_indexes": "0-3", "min_success_ratio": 0.5},
            {"rules": [{"succeededIndexes": "0-3", "succeededCount": 2}]},
        ),
        ({"success_policy": {"rules": [{"succeededCount": 1}]}}, {"rules": [{"succeededCount": 1}]}),
    ],
)
def test_compile_success_policy(kwargs: dict, expected: dict | None) -> None:
    assert compile_success_policy(_spec(**kwargs)) == expected


@pytest.mark.parametrize(
    ("kwargs", "index_map", "expected"),
    [
        # 10 indexes, 7 required; the resumed Job runs 4 of them, so 6 are already done: 1 more
        ({"min_success_ratio": 0.7}, "2,5-7", {"rules": [{"succeededCount": 1}]}),
        # 9 required, 6 done: 3 more of the 4 still to run
        ({"min_success_ratio": 0.9}, "2,5-7", {"rules": [{"succeededCount": 3}]}),
        # required logical 0-2,5: only 2 and 5 still to run, at local positions 0 and 1
        ({"success_indexes": "0-2,5"}, "2,5-7", {"rules": [{"succeededIndexes": "0-1"}]}),
        (
            {"success_indexes": "0-3", "min_success_ratio": 0.75},
            "3-9",
            {"rules": [{"succeededIndexes": "0", "succeededCount": 1}]},
        ),
        # every required index done already: any success of the resumed Job completes the stage
        ({"success_indexes": "0-1"}, "5-9", {"rules": [{"succeededCount": 1}]}),
        # the raw policy is the author's: not translated
        (
            {"success_policy": {"rules": [{"succeededIndexes": "9"}]}},
            "5-9",
            {"rules": [{"succeededIndexes": "9"}]},
        ),
    ],
)
def test_success_policy_is_remapped_for_a_resumed_job(kwargs: dict, index_map: str, expected: dict) -> None:
    assert compile_success_policy(_spec(**kwargs), IndexSet.parse(index_map)) == expected


def test_required_successes() -> None:
    assert required_successes(_spec()) is None
    assert required_successes(_spec(min_success_ratio=0.5)) == 5
    assert required_successes(_spec(min_success_ratio=0.5, success_indexes="0-3")) == 2
