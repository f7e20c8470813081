"""The pure parts behind the operator's arguments: PodOptions, rendered values, the namespace
name, the job_template's shape, and the server-version-only check."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.podchecks import JOB_SHAPE
from airflow_provider_kbatch.spec.stage import PodOptions, Resources, RunAs, StageSpec, from_rendered
from airflow_provider_kbatch.spec.validation import (
    namespace_problem,
    stage_problems,
    validate_server_version,
    validate_stage,
)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("completions", "6", 6),
        ("completions", " 6 ", 6),
        ("completions", "six", "six"),
        ("completions", "6.0", "6.0"),
        ("completions", "None", "None"),  # not optional: stays, validation names it
        ("parallelism", "None", None),
        ("backoff_limit", "-1", -1),  # an int: validation says it must be at least 0
        ("min_success_ratio", "0.9", 0.9),
        ("min_success_ratio", "nan", "nan"),
        ("suspend", "True", True),
        ("suspend", "false", False),
        ("suspend", "yes", "yes"),
        ("ignore_disruptions", "None", None),
        ("fail_on_exit_codes", ["42", 3], [42, 3]),
        ("fail_on_exit_codes", "42", "42"),
        ("queue_name", "7", "7"),  # not a number field
        ("completions", 4, 4),
    ],
)
def test_from_rendered(name: str, value: Any, expected: Any) -> None:
    assert from_rendered(name, value) == expected
    assert type(from_rendered(name, value)) is type(expected)


def test_pod_options_mirror_stage_spec_fields_and_defaults() -> None:
    spec = StageSpec(image="i")
    for f in dataclasses.fields(PodOptions):
        assert f.name in {g.name for g in dataclasses.fields(StageSpec)}, f.name
        assert getattr(PodOptions(), f.name) == getattr(spec, f.name), f.name


def test_pod_options_check_literal_values_and_defer_templates() -> None:
    with pytest.raises(KbatchSpecError) as err:
        PodOptions(node_selector={"pool": "not a label value"})
    assert err.value.field == "pod.node_selector['pool']"
    templated = PodOptions(node_selector={"pool": "{{ params.pool }}"})  # known after rendering
    rendered = templated.rendered(lambda v: {"pool": "not valid!"} if isinstance(v, dict) else v)
    assert rendered.node_selector == {"pool": "not valid!"}
    assert [e.field for e in rendered.problems()] == ["pod.node_selector['pool']"]
    assert PodOptions(check=False, run_as=RunAs(user=0)).problems()[0].field == "pod.run_as.user"


def test_resources_keep_a_wrong_requests_value_for_validation() -> None:
    res = Resources(requests=[("cpu", "1")])  # type: ignore[arg-type]
    assert res.requests == [("cpu", "1")]
    problems = stage_problems(StageSpec(image="i", resources=res))
    assert [p.field for p in problems] == ["resources.requests"]


@pytest.mark.parametrize(
    ("namespace", "problem"),
    [
        ("batch", None),
        ("team-a", None),
        ("Bad_Namespace", "'Bad_Namespace' is not a valid namespace name"),
        ("", "is empty"),
        ("a" * 64, "is not a valid namespace name"),
        (7, "must be a string"),
    ],
)
def test_namespace_problem(namespace: Any, problem: str | None) -> None:
    found = namespace_problem(namespace)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.field == "namespace" and problem in str(found)


def test_job_shape_covers_where_the_manifest_merges() -> None:
    pod = JOB_SHAPE["spec"]["template"]["spec"]
    assert {"containers", "initContainers", "volumes", "tolerations", "nodeSelector"} <= set(pod)


def test_a_well_formed_template_passes_and_lists_may_be_tuples() -> None:
    template = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {
            "template": {
                "metadata": {"annotations": {"x": "y"}},
                "spec": {
                    "containers": ({"name": "side", "image": "busybox", "command": ["sleep", "1"]},),
                    "affinity": {"nodeAffinity": {}},
                },
            }
        },
    }
    validate_stage(StageSpec(image="i", job_template=template))


def test_validate_server_version_reports_only_version_problems() -> None:
    spec = StageSpec(image="i", completions=4, backoff_limit_per_index=1)
    validate_server_version(spec, (1, 33))
    with pytest.raises(KbatchSpecError) as err:
        validate_server_version(spec, (1, 28))
    assert err.value.field == "backoff_limit_per_index"
    validate_server_version(StageSpec(image="", completions=0), (1, 20))  # other fields: not its job
