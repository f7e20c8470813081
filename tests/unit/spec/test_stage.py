from __future__ import annotations

import dataclasses

import pytest

from airflow_provider_kbatch.spec.stage import Resources, StageSpec


def test_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        StageSpec("python:3.11")  # type: ignore[misc]
    spec = StageSpec(image="python:3.11")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.image = "other"  # type: ignore[misc]


def test_defaults() -> None:
    spec = StageSpec(image="python:3.11")
    assert spec.completions == 1
    assert spec.effective_completion_mode == "Indexed" and spec.is_indexed
    assert spec.ttl_seconds_after_finished == 86400
    assert spec.pod_security == "restricted"
    assert spec.container_name == "main"
    assert spec.effective_ignore_disruptions is True
    assert spec.effective_suspend is False


def test_lists_become_tuples_and_mappings_are_copied() -> None:
    env = {"A": "1"}
    command = ["python", "-m", "x"]
    spec = StageSpec(
        image="i", command=command, env=env, fail_on_exit_codes=[3], volumes=[{"name": "v", "emptyDir": {}}]
    )
    command.append("more")
    env["B"] = "2"
    assert spec.command == ("python", "-m", "x")
    assert spec.env == {"A": "1"}
    assert spec.fail_on_exit_codes == (3,)
    assert isinstance(spec.volumes, tuple)
    # a bare string is kept as-is so validation can explain the mistake
    assert StageSpec(image="i", command="python -m x").command == "python -m x"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"requests": {"cpu": "1"}}, Resources(requests={"cpu": "1"})),
        ({"limits": {"memory": "1Gi"}, "requests": None}, Resources(limits={"memory": "1Gi"})),
        (Resources(requests={"cpu": 2}), Resources(requests={"cpu": 2})),
        ({"cpu": "1"}, {"cpu": "1"}),  # not a requests/limits dict: left for validation to report
    ],
)
def test_resources_dicts_are_normalised(resources: object, expected: object) -> None:
    assert StageSpec(image="i", resources=resources).resources == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "mode", "ignore", "suspend"),
    [
        ({"completion_mode": "NonIndexed"}, "NonIndexed", True, False),
        ({"pod_failure_policy": {"rules": []}}, "Indexed", False, False),
        ({"ignore_disruptions": False}, "Indexed", False, False),
        ({"queue_name": "team-a"}, "Indexed", True, True),
        ({"suspend": True}, "Indexed", True, True),
    ],
)
def test_effective_values(kwargs: dict, mode: str, ignore: bool, suspend: bool) -> None:
    spec = StageSpec(image="i", **kwargs)
    assert spec.effective_completion_mode == mode
    assert spec.effective_ignore_disruptions is ignore
    assert spec.effective_suspend is suspend


def test_replace() -> None:
    spec = StageSpec(image="i", completions=3)
    assert spec.replace(completions=5).completions == 5 and spec.completions == 3
