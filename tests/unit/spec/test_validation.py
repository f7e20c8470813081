from __future__ import annotations

import contextlib
from typing import Any

import pytest

from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors
from airflow_provider_kbatch.spec.stage import (
    ConfigMapEnvSource,
    EnvFromConfigMap,
    EnvFromField,
    EnvFromSecret,
    Resources,
    RunAs,
    SecretEnvSource,
    StageSpec,
)
from airflow_provider_kbatch.spec.validation import stage_problems, validate_stage


def _spec(**kwargs: Any) -> StageSpec:
    base: dict[str, Any] = {
        "image": "ghcr.io/acme/etl:1.0",
        "command": ["python", "-m", "etl"],
        "completions": 10,
    }
    base.update(kwargs)
    return StageSpec(**base)


def _problems(spec: StageSpec, server_version: tuple[int, int] | None = None) -> dict[str, str]:
    """field -> its messages (one per line)."""
    out: dict[str, str] = {}
    for err in stage_problems(spec, server_version):
        out[err.field] = f"{out[err.field]}\n{err}" if err.field in out else str(err)
    return out


VALID = [
    {},
    {"completions": 1, "completion_mode": "NonIndexed", "parallelism": 1, "backoff_limit": 0},
    {
        "backoff_limit_per_index": 2,
        "max_failed_indexes": 10,
        "fail_on_exit_codes": [3, 42],
        "fail_on_exit_codes_action": "FailIndex",
    },
    {"min_success_ratio": 1, "success_indexes": "0-9"},
    {"min_success_ratio": 0.01},
    {
        "success_policy": {
            "rules": [{"succeededIndexes": "0-2,5", "succeededCount": 4}, {"succeededCount": 10}]
        }
    },
    {
        "pod_failure_policy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0, 1]}},
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "main", "operator": "In", "values": [2, 3]},
                },
            ]
        }
    },
    {"pod_failure_policy": {"rules": []}, "ignore_disruptions": False},
    {
        "env": {
            "PLAIN": "1",
            "PASSWORD": EnvFromSecret("db-credentials", "password"),
            "MODE": EnvFromConfigMap("settings", "mode", optional=True),
            "POD": EnvFromField("metadata.name"),
            "REF": "$(KBATCH_INDEX)",
        },
        "env_from": [SecretEnvSource("api-keys", prefix="API_"), ConfigMapEnvSource("common")],
    },
    {
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": 1, "memory": "1024Mi", "nvidia.com/gpu": "1"},
        }
    },
    {"resources": Resources(limits={"memory": "2Gi"})},
    {
        "labels": {"team": "data", "example.com/cost-center": "c-12"},
        "annotations": {"example.com/owner": "x" * 1000},
    },
    {"queue_name": "team-a.batch", "priority_class_name": "batch-low", "service_account_name": "etl-runner"},
    {
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "batch", "operator": "Exists"}],
    },
    {
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}],
    },
    {
        "pod_security": "none",
        "run_as": RunAs(user=0, group=0),
        "volumes": [{"name": "h", "hostPath": {"path": "/x"}}],
    },
    {
        "job_template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}},
        }
    },
    {
        "job_template": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}},
        "ignore_disruptions": False,
    },
    {"pod_replacement_policy": "Failed"},
    {"pod_replacement_policy": "TerminatingOrFailed", "ignore_disruptions": False},
    {"active_deadline_seconds": 3600, "ttl_seconds_after_finished": 0},
    {"ttl_seconds_after_finished": None},
    {
        "completions": 200_000,
        "backoff_limit_per_index": 1,
        "max_failed_indexes": 10_000,
        "parallelism": 10_000,
    },
]


@pytest.mark.parametrize("kwargs", VALID)
def test_valid_specs_pass(kwargs: dict[str, Any]) -> None:
    validate_stage(_spec(**kwargs))
    validate_stage(_spec(**kwargs), server_version=(1, 34))


# (kwargs, field named by the error, a phrase of the problem or fix)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"image": ""}, "image", "is empty"),
    ({"image": "  "}, "image", "is empty"),
    ({"image": "python 3"}, "image", "whitespace"),
    ({"command": "python -m etl"}, "command", "single string"),
    ({"args": ["--n", 3]}, "args", "list of strings"),
    ({"container_name": "Main"}, "container_name", "DNS-1123"),
    ({"image_pull_policy": "Sometimes"}, "image_pull_policy", "not supported"),
    ({"image_pull_secrets": ["Bad_Name"]}, "image_pull_secrets[0]", "not a valid Secret name"),
    ({"env": {"1X": "a"}}, "env['1X']", "not a valid environment variable name"),
    ({"env": {"KBATCH_INDEX": "3"}}, "env['KBATCH_INDEX']", "set by kbatch"),
    ({"env": {"N": 3}}, "env['N']", "must be a string"),
    ({"env": {"P": EnvFromSecret("Bad Name", "k")}}, "env['P'].name", "Secret name"),
    ({"env": {"P": EnvFromSecret("db", "bad key")}}, "env['P'].key", "Secret key"),
    ({"env": {"F": EnvFromField("")}}, "env['F'].field_path", "is empty"),
    ({"env_from": ["my-secret"]}, "env_from[0]", "SecretEnvSource"),
    ({"env_from": [ConfigMapEnvSource("cm", prefix="1-")]}, "env_from[0].prefix", "prefix"),
    ({"resources": {"cpu": "1"}}, "resources", "Resources(requests=..., limits=...)"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests['cpu']", "is not a quantity"),
    ({"resources": {"requests": {"cpu": "-1"}}}, "resources.requests['cpu']", "negative"),
    (
        {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
        "resources.limits['memory']",
        "less than the request",
    ),
    (
        {"resources": {"requests": {"cpu": "1500m"}, "limits": {"cpu": "1"}}},
        "resources.limits['cpu']",
        "less than the request",
    ),
    (
        {"resources": {"requests": {"bad name": "1"}}},
        "resources.requests['bad name']",
        "invalid resource name",
    ),
    ({"completions": 0}, "completions", "at least 1"),
    ({"completions": "10"}, "completions", "must be an int"),
    ({"completions": True}, "completions", "must be an int"),
    ({"parallelism": 0}, "parallelism", "at least 1"),
    ({"parallelism": 100_001}, "parallelism", "limit for Indexed Jobs"),
    ({"backoff_limit": -1}, "backoff_limit", "at least 0"),
    ({"backoff_limit_per_index": -1}, "backoff_limit_per_index", "at least 0"),
    ({"active_deadline_seconds": 0}, "active_deadline_seconds", "at least 1"),
    ({"ttl_seconds_after_finished": -5}, "ttl_seconds_after_finished", "at least 0"),
    ({"suspend": "yes"}, "suspend", "True or False"),
    ({"completion_mode": "indexed"}, "completion_mode", "not supported"),
    (
        {"completion_mode": "NonIndexed", "backoff_limit_per_index": 1},
        "backoff_limit_per_index",
        "only works with completion_mode='Indexed'",
    ),
    (
        {"completion_mode": "NonIndexed", "min_success_ratio": 0.5},
        "min_success_ratio",
        "only works with completion_mode='Indexed'",
    ),
    (
        {"completion_mode": "NonIndexed", "success_indexes": "1"},
        "success_indexes",
        "only works with completion_mode='Indexed'",
    ),
    (
        {"completion_mode": "NonIndexed", "success_policy": {"rules": [{"succeededCount": 1}]}},
        "success_policy",
        "only works with completion_mode='Indexed'",
    ),
    (
        {
            "completion_mode": "NonIndexed",
            "fail_on_exit_codes": [3],
            "fail_on_exit_codes_action": "FailIndex",
        },
        "fail_on_exit_codes_action",
        "only works with completion_mode='Indexed'",
    ),
    ({"max_failed_indexes": 2}, "max_failed_indexes", "needs backoff_limit_per_index"),
    ({"max_failed_indexes": 11, "backoff_limit_per_index": 1}, "max_failed_indexes", "more than completions"),
    ({"completions": 200_000, "backoff_limit_per_index": 1}, "max_failed_indexes", "at most 10000"),
    (
        {
            "completions": 200_000,
            "backoff_limit_per_index": 1,
            "max_failed_indexes": 5,
            "parallelism": 20_000,
        },
        "parallelism",
        "at most 10000",
    ),
    ({"fail_on_exit_codes": [0]}, "fail_on_exit_codes", "exit code 0 means success"),
    ({"fail_on_exit_codes": [256]}, "fail_on_exit_codes", "outside 0..255"),
    ({"fail_on_exit_codes": [-1]}, "fail_on_exit_codes", "outside 0..255"),
    ({"fail_on_exit_codes": ["3"]}, "fail_on_exit_codes", "not an int"),
    ({"fail_on_exit_codes": 3}, "fail_on_exit_codes", "list of ints"),
    ({"fail_on_exit_codes_action": "Fail"}, "fail_on_exit_codes_action", "not supported"),
    (
        {"fail_on_exit_codes": [3], "fail_on_exit_codes_action": "FailIndex"},
        "fail_on_exit_codes_action",
        "needs backoff_limit_per_index",
    ),
    (
        {"fail_on_exit_codes": [3], "pod_failure_policy": {"rules": []}},
        "fail_on_exit_codes",
        "raw pod_failure_policy",
    ),
    (
        {"ignore_disruptions": True, "pod_failure_policy": {"rules": []}},
        "ignore_disruptions",
        "raw pod_failure_policy",
    ),
    ({"pod_failure_policy": {"rule": []}}, "pod_failure_policy", "'rules' list"),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}}] * 21
            }
        },
        "pod_failure_policy.rules",
        "more than 20",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]
            }
        },
        "pod_failure_policy.rules[0].action",
        "not supported",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]
            }
        },
        "pod_failure_policy.rules[0].action",
        "needs backoff_limit_per_index",
    ),
    (
        {"pod_failure_policy": {"rules": [{"action": "Ignore"}]}},
        "pod_failure_policy.rules[0]",
        "exactly one of",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onExitCodes": {"operator": "In", "values": [1]},
                        "onPodConditions": [{"type": "X"}],
                    }
                ]
            }
        },
        "pod_failure_policy.rules[0]",
        "exactly one of",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 1]}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "exit code 0",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 300]}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "outside 0..255",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 2]}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "more than once",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 2]}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "sorted",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": list(range(256))}}
                ]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "more than 255",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": []}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.values",
        "at least one",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "Is", "values": [1]}}]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.operator",
        "not supported",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "other", "operator": "In", "values": [1]},
                    }
                ]
            }
        },
        "pod_failure_policy.rules[0].onExitCodes.containerName",
        "not a container",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": True}]}
                ]
            }
        },
        "pod_failure_policy.rules[0].onPodConditions[0].status",
        "the string 'True'",
    ),
    (
        {
            "pod_failure_policy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "X", "status": "True"}] * 21}]
            }
        },
        "pod_failure_policy.rules[0].onPodConditions",
        "more than 20",
    ),
    (
        {"job_template": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}},
        "job_template.spec.template.spec.restartPolicy",
        "cannot be used with a pod failure policy",
    ),
    (
        {
            "job_template": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}},
            "ignore_disruptions": False,
            "backoff_limit_per_index": 1,
        },
        "job_template.spec.template.spec.restartPolicy",
        "backoff_limit_per_index",
    ),
    (
        {"job_template": {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}},
        "job_template.spec.template.spec.restartPolicy",
        "not allowed",
    ),
    (
        {"job_template": {"metadata": {"name": "mine"}}},
        "job_template.metadata.name",
        "derived from the task instance",
    ),
    (
        {"job_template": {"metadata": {"namespace": "other"}}},
        "job_template.metadata.namespace",
        "namespace argument",
    ),
    (
        {"job_template": {"spec": {"selector": {"matchLabels": {"a": "b"}}}}},
        "job_template.spec.selector",
        "generates the selector",
    ),
    ({"job_template": {"kind": "Pod"}}, "job_template", "not a batch/v1 Job"),
    ({"job_template": "kind: Job"}, "job_template", "must be a dict"),
    (
        {"pod_replacement_policy": "TerminatingOrFailed"},
        "pod_replacement_policy",
        "not allowed with a pod failure policy",
    ),
    ({"pod_replacement_policy": "Always"}, "pod_replacement_policy", "not supported"),
    ({"min_success_ratio": 0}, "min_success_ratio", "(0, 1]"),
    ({"min_success_ratio": 1.5}, "min_success_ratio", "(0, 1]"),
    ({"min_success_ratio": True}, "min_success_ratio", "(0, 1]"),
    ({"min_success_ratio": "0.5"}, "min_success_ratio", "(0, 1]"),
    ({"success_indexes": "0-3,x"}, "success_indexes", "invalid index range 'x'"),
    ({"success_indexes": "5-10"}, "success_indexes", "index 10 is not below completions (10)"),
    ({"success_indexes": ""}, "success_indexes", "is empty"),
    ({"success_indexes": [1, 2]}, "success_indexes", "must be a string"),
    (
        {"success_indexes": "1", "success_policy": {"rules": [{"succeededCount": 1}]}},
        "success_indexes",
        "raw success_policy",
    ),
    ({"success_policy": {"rules": []}}, "success_policy", "non-empty 'rules'"),
    ({"success_policy": {"rules": [{}]}}, "success_policy.rules[0]", "succeededIndexes or succeededCount"),
    (
        {"success_policy": {"rules": [{"succeededCount": 11}]}},
        "success_policy.rules[0].succeededCount",
        "more than completions",
    ),
    (
        {"success_policy": {"rules": [{"succeededCount": -1}]}},
        "success_policy.rules[0].succeededCount",
        "at least 0",
    ),
    (
        {"success_policy": {"rules": [{"succeededIndexes": "0-1", "succeededCount": 3}]}},
        "success_policy.rules[0].succeededCount",
        "more than the 2 indexes",
    ),
    (
        {"success_policy": {"rules": [{"succeededIndexes": "10"}]}},
        "success_policy.rules[0].succeededIndexes",
        "not below completions",
    ),
    ({"success_policy": {"rules": [{"succeededCount": 1}] * 21}}, "success_policy.rules", "more than 20"),
    ({"labels": {"bad key": "v"}}, "labels['bad key']", "invalid label key"),
    ({"labels": {"k" * 64: "v"}}, "labels['" + "k" * 64 + "']", "more than 63"),
    ({"labels": {"team": "v" * 64}}, "labels['team']", "not a valid label value"),
    ({"labels": {"team": "-x"}}, "labels['team']", "not a valid label value"),
    ({"labels": {"kbatch.io/run-key": "x"}}, "labels['kbatch.io/run-key']", "set by kbatch"),
    ({"labels": {"kueue.x-k8s.io/queue-name": "q"}}, "labels['kueue.x-k8s.io/queue-name']", "queue_name"),
    (
        {"labels": {"batch.kubernetes.io/job-name": "x"}},
        "labels['batch.kubernetes.io/job-name']",
        "Job controller",
    ),
    ({"annotations": {"Bad/x": "v"}}, "annotations['Bad/x']", "invalid annotation key"),
    ({"annotations": {"kbatch.io/spec-hash": "v"}}, "annotations['kbatch.io/spec-hash']", "set by kbatch"),
    ({"annotations": {"a": 1}}, "annotations['a']", "must be a string"),
    ({"annotations": {"a": "x" * 300_000}}, "annotations", "256 KiB"),
    ({"node_selector": {"zone": "a b"}}, "node_selector['zone']", "not a valid label value"),
    ({"queue_name": "Team A"}, "queue_name", "Kueue LocalQueue name"),
    ({"queue_name": ""}, "queue_name", "Kueue LocalQueue name"),
    ({"queue_name": "q" * 64}, "queue_name", "Kueue LocalQueue name"),
    ({"priority_class_name": "High_Priority"}, "priority_class_name", "valid object name"),
    ({"service_account_name": "SA"}, "service_account_name", "valid object name"),
    ({"tolerations": [{"operator": "Maybe"}]}, "tolerations[0].operator", "not supported"),
    ({"tolerations": ["batch"]}, "tolerations[0]", "must be a dict"),
    (
        {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]},
        "volumes[1].name",
        "declared twice",
    ),
    ({"volumes": [{"emptyDir": {}}]}, "volumes[0].name", "not a valid volume name"),
    ({"volume_mounts": [{"name": "a", "mountPath": "data"}]}, "volume_mounts[0].mountPath", "absolute path"),
    ({"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}, "volumes[0]", "hostPath"),
    (
        {
            "job_template": {
                "spec": {"template": {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}}
            }
        },
        "job_template.spec.template.spec.volumes[0]",
        "restricted Pod Security Standard",
    ),
    (
        {"job_template": {"spec": {"template": {"spec": {"hostNetwork": True}}}}},
        "job_template.spec.template.spec.hostNetwork",
        "restricted",
    ),
    (
        {
            "job_template": {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "main", "securityContext": {"privileged": True}}]}
                    }
                }
            }
        },
        "job_template.spec.template.spec.containers[0].securityContext.privileged",
        "restricted",
    ),
    ({"run_as": RunAs(user=0)}, "run_as.user", "root"),
    ({"run_as": RunAs(user=-3)}, "run_as.user", "non-negative"),
    ({"run_as": {"user": 1}}, "run_as", "RunAs("),
    ({"pod_security": "baseline"}, "pod_security", "not supported"),
    ({"working_dir": ""}, "working_dir", "non-empty path"),
    (
        {"job_template": {"metadata": {"annotations": {"when": object()}}}},
        "job_template",
        "not plain JSON data",
    ),
    ({"volumes": [{"name": "v", "emptyDir": {"sizeLimit": float("nan")}}]}, "volumes", "not plain JSON data"),
]


@pytest.mark.parametrize(
    ("kwargs", "field", "phrase"), INVALID, ids=[f"{i}-{case[1]}" for i, case in enumerate(INVALID)]
)
def test_invalid_specs_name_the_field(kwargs: dict[str, Any], field: str, phrase: str) -> None:
    problems = _problems(_spec(**kwargs))
    assert field in problems, problems
    assert phrase in problems[field]
    assert problems[field].startswith(f"{field}: ")
    with pytest.raises(KbatchSpecError):
        validate_stage(_spec(**kwargs))


def test_every_problem_is_reported_at_once() -> None:
    spec = _spec(
        image="",
        completions=0,
        backoff_limit=-1,
        fail_on_exit_codes=[0],
        min_success_ratio=2,
        labels={"bad key": "v"},
        resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
    )
    with pytest.raises(KbatchSpecErrors) as exc:
        validate_stage(spec)
    fields = [e.field for e in exc.value.errors]
    assert set(fields) >= {
        "image",
        "completions",
        "backoff_limit",
        "fail_on_exit_codes",
        "min_success_ratio",
        "labels['bad key']",
        "resources.limits['memory']",
    }
    text = str(exc.value)
    assert text.startswith(f"{len(fields)} problems in the stage description:")
    assert all(f"  - {e}" in text for e in exc.value.errors)
    # every message carries a fix, not only a complaint
    assert all(e.fix for e in exc.value.errors)


def test_a_single_problem_raises_a_single_error() -> None:
    with pytest.raises(KbatchSpecError) as exc:
        validate_stage(_spec(completions=0))
    assert type(exc.value) is KbatchSpecError
    assert (
        str(exc.value)
        == "completions: must be at least 1, got 0. Pass completions=1 or more (the number of indexes)."
    )


@pytest.mark.parametrize(
    ("kwargs", "version", "field", "needs"),
    [
        ({"backoff_limit_per_index": 1}, (1, 28), "backoff_limit_per_index", "1.29"),
        ({"backoff_limit_per_index": 1, "max_failed_indexes": 1}, (1, 27), "max_failed_indexes", "1.29"),
        (
            {
                "backoff_limit_per_index": 1,
                "fail_on_exit_codes": [3],
                "fail_on_exit_codes_action": "FailIndex",
            },
            (1, 28),
            "fail_on_exit_codes_action",
            "1.29",
        ),
        ({"min_success_ratio": 0.5}, (1, 30), "min_success_ratio", "1.31"),
        ({"success_indexes": "0"}, (1, 30), "success_indexes", "1.31"),
        ({"success_policy": {"rules": [{"succeededCount": 1}]}}, (1, 29), "success_policy", "1.31"),
        ({"fail_on_exit_codes": [3]}, (1, 25), "fail_on_exit_codes", "1.26"),
        ({"ignore_disruptions": True}, (1, 25), "ignore_disruptions", "1.26"),
        ({"pod_failure_policy": {"rules": []}}, (1, 25), "pod_failure_policy", "1.26"),
        ({"pod_replacement_policy": "Failed"}, (1, 28), "pod_replacement_policy", "1.29"),
    ],
)
def test_fields_too_new_for_the_server(
    kwargs: dict[str, Any], version: tuple[int, int], field: str, needs: str
) -> None:
    spec = _spec(**kwargs)
    assert _problems(spec) == {}
    problems = _problems(spec, version)
    assert field in problems and f"Kubernetes {needs}" in problems[field]
    assert "silently ignore" in problems[field]
    newer = (int(needs.split(".")[0]), int(needs.split(".")[1]))
    assert field not in _problems(spec, newer)


def test_default_ignore_disruptions_is_fine_on_an_old_server() -> None:
    # nothing was asked for explicitly: the server dropping the default rule changes nothing asked
    assert _problems(_spec(), (1, 24)) == {}


def test_validate_needs_a_stage_spec() -> None:
    with pytest.raises(TypeError):
        validate_stage({"image": "x"})  # type: ignore[arg-type]


WEIRD_VALUES: list[Any] = [None, "", "x", -1, 0, 2**40, 1.5, True, [], ["x"], {}, {"a": 1}, object()]


@pytest.mark.parametrize("field", sorted(StageSpec.__dataclass_fields__))
def test_validation_never_crashes_on_wrong_types(field: str) -> None:
    """Whatever an author passes, the answer is a named problem, never a TypeError deep inside."""
    for value in WEIRD_VALUES:
        for extra in ({}, {"backoff_limit_per_index": 1, "completions": 200_000}):
            kwargs = {**extra, field: value}
            try:
                spec = _spec(**kwargs)
            except (TypeError, ValueError, AttributeError):
                continue  # rejected by the dataclass itself
            with contextlib.suppress(KbatchSpecError):
                validate_stage(spec, server_version=(1, 20))
