from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import (
    RESUME_SHIM,
    SHIM_EXIT_CODE,
    build_job_manifest,
    deep_merge,
    spec_hash,
)
from airflow_provider_kbatch.spec.names import JobIdentity, identity_annotations, identity_labels, job_name
from airflow_provider_kbatch.spec.stage import (
    ConfigMapEnvSource,
    EnvFromSecret,
    RunAs,
    SecretEnvSource,
    StageSpec,
)
from tests.unit.spec import kubelet_sim

IDENTITY = JobIdentity("etl_daily", "extract", "scheduled__2024-01-01T00:00:00+00:00", 3, 2)
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
REPO_ROOT = Path(__file__).resolve().parents[3]


def _spec(**kwargs: Any) -> StageSpec:
    base: dict[str, Any] = {
        "image": "ghcr.io/acme/etl:1.0",
        "command": ["python", "-m", "etl"],
        "completions": 10,
    }
    base.update(kwargs)
    return StageSpec(**base)


def _build(spec: StageSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    return build_job_manifest(spec or _spec(), IDENTITY, generation=2, namespace="batch", **kwargs)


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def _container(manifest: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return next(c for c in _pod(manifest)["containers"] if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _run(
    container: dict[str, Any], manifest: dict[str, Any], local_index: int
) -> subprocess.CompletedProcess[str]:
    """Run the container's command the way a kubelet would, on this machine's /bin/sh."""
    annotations = {**manifest["spec"]["template"]["metadata"]["annotations"], INDEX_KEY: str(local_index)}
    env = kubelet_sim.container_env(container, annotations, indexed=True)
    argv = kubelet_sim.container_argv(container, env)
    return subprocess.run(
        argv,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


# --------------------------------------------------------------------------- first attempt


def test_first_attempt_manifest() -> None:
    spec = _spec()
    m = _build(spec)
    assert (m["apiVersion"], m["kind"]) == ("batch/v1", "Job")
    assert list(m)[:4] == ["apiVersion", "kind", "metadata", "spec"]
    meta = m["metadata"]
    assert meta["name"] == job_name(IDENTITY, 2) and meta["namespace"] == "batch"
    assert meta["labels"] == identity_labels(IDENTITY, 2)
    assert meta["annotations"] == {
        **identity_annotations(IDENTITY),
        "kbatch.io/spec-hash": spec_hash(spec),
        "kbatch.io/index-map": "0-9",
    }
    job = m["spec"]
    assert job["completions"] == 10 and job["completionMode"] == "Indexed" and job["suspend"] is False
    assert job["ttlSecondsAfterFinished"] == 86400
    assert job["podFailurePolicy"] == {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    }
    for absent in (
        "parallelism",
        "backoffLimit",
        "successPolicy",
        "activeDeadlineSeconds",
        "backoffLimitPerIndex",
        "podReplacementPolicy",
    ):
        assert absent not in job
    template_meta = job["template"]["metadata"]
    assert template_meta["labels"] == identity_labels(IDENTITY, 2)
    assert template_meta["annotations"] == {
        **meta["annotations"],
        "kubectl.kubernetes.io/default-container": "main",
    }
    pod = _pod(m)
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["containers"]] == ["main"]
    main = _container(m)
    assert main["image"] == "ghcr.io/acme/etl:1.0"
    assert main["command"] == ["python", "-m", "etl"] and "args" not in main
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert [e["name"] for e in main["env"]] == [
        "KBATCH_STAGE",
        "KBATCH_RUN_ID",
        "JOB_COMPLETION_INDEX",
        "KBATCH_INDEX",
    ]
    env = _env(main)
    assert env["KBATCH_STAGE"]["value"] == "extract" and env["KBATCH_RUN_ID"]["value"] == IDENTITY.run_id
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}
    }
    assert env["KBATCH_INDEX"]["value"] == "$(JOB_COMPLETION_INDEX)"
    json.dumps(m)  # plain JSON, as the API server speaks it


def test_restricted_pod_security_by_default() -> None:
    m = _build(
        _spec(
            job_template={
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [{"name": "init", "image": "busybox"}],
                            "containers": [
                                {
                                    "name": "side",
                                    "image": "busybox",
                                    "securityContext": {
                                        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW"]}
                                    },
                                }
                            ],
                        }
                    }
                }
            }
        )
    )
    assert _pod(m)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in [*_pod(m)["containers"], *_pod(m)["initContainers"]]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["runAsNonRoot"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
    assert _container(m, "side")["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]


def test_pod_security_opt_out_and_run_as() -> None:
    m = _build(_spec(pod_security="none"))
    assert "securityContext" not in _pod(m) and "securityContext" not in _container(m)
    m = _build(_spec(run_as=RunAs(user=2000, group=3000, fs_group=None)))
    assert _pod(m)["securityContext"]["runAsUser"] == 2000 and "fsGroup" not in _pod(m)["securityContext"]


@pytest.mark.parametrize("local_index", [0, 3, 9])
def test_first_attempt_pod_sees_its_index(local_index: int) -> None:
    m = _build(_spec(command=["sh", "-c", 'echo "$KBATCH_INDEX $JOB_COMPLETION_INDEX $KBATCH_STAGE"']))
    done = _run(_container(m), m, local_index)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(local_index), str(local_index), "extract"]


def test_typed_fields_are_rendered() -> None:
    spec = _spec(
        args=["--date", "2024-01-01"],
        env={
            "MODE": "full",
            "DB_PASSWORD": EnvFromSecret("db-credentials", "password"),
            "OUT": "/out/$(KBATCH_INDEX)",
        },
        env_from=[SecretEnvSource("api-keys", prefix="API_"), ConfigMapEnvSource("common", optional=True)],
        resources={"requests": {"cpu": "500m", "memory": 2 * 1024**3}, "limits": {"memory": "4Gi"}},
        parallelism=4,
        backoff_limit=2,
        backoff_limit_per_index=1,
        max_failed_indexes=3,
        fail_on_exit_codes=[42],
        min_success_ratio=0.9,
        active_deadline_seconds=3600,
        ttl_seconds_after_finished=600,
        priority_class_name="batch-low",
        queue_name="team-a",
        node_selector={"pool": "batch"},
        tolerations=[{"key": "batch", "operator": "Exists"}],
        service_account_name="etl",
        labels={"team": "data"},
        annotations={"example.com/owner": "data-eng"},
        working_dir="/work",
        image_pull_policy="IfNotPresent",
        image_pull_secrets=["regcred"],
        volumes=[{"name": "scratch", "emptyDir": {}}],
        volume_mounts=[{"name": "scratch", "mountPath": "/scratch"}],
        pod_replacement_policy="Failed",
    )
    m = _build(spec)
    job = m["spec"]
    assert {
        k: job[k]
        for k in (
            "parallelism",
            "backoffLimit",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
            "podReplacementPolicy",
        )
    } == {
        "parallelism": 4,
        "backoffLimit": 2,
        "backoffLimitPerIndex": 1,
        "maxFailedIndexes": 3,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": 600,
        "podReplacementPolicy": "Failed",
    }
    assert job["successPolicy"] == {"rules": [{"succeededCount": 9}]}
    assert job["podFailurePolicy"]["rules"][1] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
    }
    # Kueue: the queue label on the Job (not the pods), created suspended
    assert job["suspend"] is True
    assert m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/queue-name" not in job["template"]["metadata"]["labels"]
    assert (
        m["metadata"]["labels"]["team"] == "data" and job["template"]["metadata"]["labels"]["team"] == "data"
    )
    assert job["template"]["metadata"]["annotations"]["example.com/owner"] == "data-eng"
    pod = _pod(m)
    assert pod["priorityClassName"] == "batch-low" and pod["serviceAccountName"] == "etl"
    assert pod["nodeSelector"] == {"pool": "batch"} and pod["tolerations"] == [
        {"key": "batch", "operator": "Exists"}
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    main = _container(m)
    assert main["args"] == ["--date", "2024-01-01"]
    assert main["resources"] == {
        "requests": {"cpu": "500m", "memory": str(2 * 1024**3)},
        "limits": {"memory": "4Gi"},
    }
    assert main["workingDir"] == "/work" and main["imagePullPolicy"] == "IfNotPresent"
    assert main["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
    assert main["envFrom"] == [
        {"secretRef": {"name": "api-keys", "optional": False}, "prefix": "API_"},
        {"configMapRef": {"name": "common", "optional": True}},
    ]
    env = _env(main)
    # secrets are referenced, never copied
    assert env["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password", "optional": False}},
    }
    # the author's env comes after KBATCH_INDEX, so it may refer to it
    names = [e["name"] for e in main["env"]]
    assert names.index("KBATCH_INDEX") < names.index("OUT")
    done = _run({**main, "command": ["sh", "-c", "echo $OUT"], "args": []}, m, 7)
    assert done.stdout.strip() == "/out/7"


def test_extra_env_labels_annotations_and_volumes() -> None:
    m = _build(
        _spec(
            env={"KBATCH_OUTPUT_DIR": "/tmp"},
            labels={"team": "data"},
            volumes=[{"name": "scratch", "emptyDir": {}}],
        ),
        extra_env={"KBATCH_OUTPUT_DIR": "/data/out", "KBATCH_CHECKPOINT_DIR": "/data/ckpt/$(KBATCH_INDEX)"},
        extra_labels={"team": "platform", "kbatch.io/attempt": "99"},
        extra_annotations={"kbatch.io/ledger": "x"},
        volumes=[{"name": "out", "persistentVolumeClaim": {"claimName": "pvc-out"}}],
        volume_mounts=[{"name": "out", "mountPath": "/data"}],
    )
    env = _env(_container(m))
    assert env["KBATCH_OUTPUT_DIR"]["value"] == "/data/out"  # extra_env wins over the author's
    assert env["KBATCH_CHECKPOINT_DIR"]["value"] == "/data/ckpt/$(KBATCH_INDEX)"
    assert m["metadata"]["labels"]["team"] == "platform"
    assert m["metadata"]["labels"]["kbatch.io/attempt"] == "2"  # identity labels cannot be overridden
    assert m["metadata"]["annotations"]["kbatch.io/ledger"] == "x"
    assert [v["name"] for v in _pod(m)["volumes"]] == ["scratch", "out"]
    assert _container(m)["volumeMounts"] == [{"name": "out", "mountPath": "/data"}]


def test_job_template_is_merged_underneath() -> None:
    template = {
        "metadata": {"labels": {"from-template": "yes"}, "annotations": {"a": "b"}},
        "spec": {
            "completions": 99,
            "activeDeadlineSeconds": 50,
            "template": {
                "metadata": {"labels": {"pod-template": "yes"}},
                "spec": {
                    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
                    "containers": [
                        {"name": "sidecar", "image": "busybox", "command": ["sleep", "1"]},
                        {
                            "name": "main",
                            "image": "ignored",
                            "env": [{"name": "MODE", "value": "template"}, {"name": "KEEP", "value": "1"}],
                            "ports": [{"containerPort": 8080}],
                        },
                    ],
                },
            },
        },
        "status": {"active": 3},
    }
    m = _build(_spec(job_template=template, env={"MODE": EnvFromSecret("s", "k")}))
    assert m["metadata"]["labels"]["from-template"] == "yes" and m["metadata"]["annotations"]["a"] == "b"
    assert m["spec"]["completions"] == 10  # typed wins
    assert m["spec"]["activeDeadlineSeconds"] == 50  # not set by a typed field: template's
    assert m["spec"]["template"]["metadata"]["labels"]["pod-template"] == "yes"
    assert "status" not in m
    pod = _pod(m)
    assert pod["hostAliases"] == [{"ip": "10.0.0.1", "hostnames": ["db"]}]
    assert [c["name"] for c in pod["containers"]] == ["main", "sidecar"]  # main first
    main = _container(m)
    assert main["image"] == "ghcr.io/acme/etl:1.0" and main["ports"] == [{"containerPort": 8080}]
    env = _env(main)
    assert env["MODE"] == {
        "name": "MODE",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": False}},
    }
    assert env["KEEP"]["value"] == "1"
    side = _env(_container(m, "sidecar"))
    assert side["KBATCH_INDEX"]["value"] == "$(JOB_COMPLETION_INDEX)" and "KBATCH_STAGE" in side


def test_non_indexed_has_no_index_variables() -> None:
    m = _build(_spec(completion_mode="NonIndexed", completions=3))
    assert m["spec"]["completionMode"] == "NonIndexed"
    assert "kbatch.io/index-map" not in m["metadata"]["annotations"]
    assert [e["name"] for e in _container(m)["env"]] == ["KBATCH_STAGE", "KBATCH_RUN_ID"]
    with pytest.raises(KbatchSpecError, match="index_map"):
        _build(_spec(completion_mode="NonIndexed"), index_map=IndexSet.parse("1"))


def test_invalid_spec_is_rejected_before_rendering() -> None:
    with pytest.raises(KbatchSpecError, match="completions"):
        _build(_spec(completions=0))


# --------------------------------------------------------------------------- resumed attempt


def test_resumed_manifest() -> None:
    spec = _spec(
        args=["--flag", "two words"], backoff_limit_per_index=1, max_failed_indexes=8, success_indexes="0-2,5"
    )
    m = _build(spec, index_map=IndexSet.parse("2,5-7"))
    job = m["spec"]
    assert job["completions"] == 4
    assert job["maxFailedIndexes"] == 4  # clamped to the resumed completions
    assert job["successPolicy"] == {"rules": [{"succeededIndexes": "0-1"}]}
    assert m["metadata"]["annotations"]["kbatch.io/index-map"] == "2,5-7"
    main = _container(m)
    env = _env(main)
    assert env["KBATCH_INDEX_MAP"]["value"] == "2,5-7" and "KBATCH_INDEX" not in env
    names = [e["name"] for e in main["env"]]
    assert names.index("JOB_COMPLETION_INDEX") < names.index("KBATCH_INDEX_MAP")
    assert main["command"][:3] == ["/bin/sh", "-c", RESUME_SHIM]
    assert main["command"][4:] == ["python", "-m", "etl", "--flag", "two words"] and "args" not in main


def test_resume_over_the_full_range_is_a_first_attempt() -> None:
    m = _build(_spec(), index_map=IndexSet.full(10))
    assert _container(m)["command"] == ["python", "-m", "etl"]
    assert _env(_container(m))["KBATCH_INDEX"]["value"] == "$(JOB_COMPLETION_INDEX)"


def test_containers_without_command_are_not_wrapped() -> None:
    m = _build(_spec(command=None, args=["run"]), index_map=IndexSet.parse("4"))
    main = _container(m)
    assert "command" not in main and main["args"] == ["run"]
    assert _env(main)["KBATCH_INDEX_MAP"]["value"] == "4"  # runtime.index() computes it


@pytest.mark.parametrize(
    ("index_map", "phrase"),
    [
        (IndexSet(), "is empty"),
        (IndexSet.parse("5-10"), "not below completions"),
        ("1-2", "must be an IndexSet"),
    ],
)
def test_bad_index_maps(index_map: Any, phrase: str) -> None:
    with pytest.raises(KbatchSpecError, match=phrase):
        _build(_spec(), index_map=index_map)


def test_too_fragmented_index_map_is_refused() -> None:
    spec = _spec(completions=100_000)
    with pytest.raises(KbatchSpecError, match="too fragmented"):
        _build(spec, index_map=IndexSet.of(range(0, 100_000, 2)))
    m = _build(spec, index_map=IndexSet.of(range(0, 20_000, 2)))  # ~60 KB: fine
    assert m["spec"]["completions"] == 10_000


# --------------------------------------------------------------------------- the shim, for real

MAPS = ["2,5-7", "0", "9", "1-3,6,8-9", "0,2,4,6,8", "3-8", "0-4,100-104,999990-999999"]


@pytest.mark.parametrize("index_map", MAPS)
def test_shim_gives_every_pod_its_logical_index(index_map: str) -> None:
    mapping = IndexSet.parse(index_map)
    spec = _spec(
        completions=1_000_000,
        command=["sh", "-c", 'printf "%s|" "$KBATCH_INDEX" "$@"', "argv0"],
        args=["a b", "$HOME", "'q'", ""],
    )
    m = _build(spec, index_map=mapping)
    main = _container(m)
    for local in range(len(mapping)):
        done = _run(main, m, local)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{mapping.nth(local)}|a b|$HOME|'q'||"


def test_shim_is_unchanged_by_kubelet_expansion() -> None:
    env = {
        name: "X"
        for name in (
            "JOB_COMPLETION_INDEX",
            "KBATCH_INDEX_MAP",
            "KBATCH_INDEX",
            "k",
            "r",
            "a",
            "b",
            "n",
            "IFS",
        )
    }
    assert kubelet_sim.expand(RESUME_SHIM, env) == RESUME_SHIM
    assert "$$" not in RESUME_SHIM


@pytest.mark.parametrize(
    ("completion_index", "index_map", "message"),
    [
        ("4", "2,5-7", "outside"),
        ("x", "2,5-7", "not an index"),
        ("", "2,5-7", "not an index"),
        ("0", "2,a", "malformed"),
        ("0", "3-", "malformed"),
        ("0", "", "malformed"),
        ("0", "1,,2", "malformed"),
        ("0", "1-2-3", "bad range"),
    ],
)
def test_shim_fails_loudly_on_an_inconsistent_environment(
    completion_index: str, index_map: str, message: str
) -> None:
    done = subprocess.run(
        ["/bin/sh", "-c", RESUME_SHIM, "shim", "echo", "ran"],
        env={
            "PATH": os.environ.get("PATH", "/bin"),
            "JOB_COMPLETION_INDEX": completion_index,
            "KBATCH_INDEX_MAP": index_map,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == SHIM_EXIT_CODE and "ran" not in done.stdout
    assert message in done.stderr


def test_shim_handles_thousands_of_ranges_quickly() -> None:
    mapping = IndexSet.of(range(0, 20_000, 2))  # 10,000 ranges
    done = subprocess.run(
        ["/bin/sh", "-c", RESUME_SHIM, "shim", "sh", "-c", 'echo "$KBATCH_INDEX"'],
        env={
            "PATH": os.environ.get("PATH", "/bin"),
            "JOB_COMPLETION_INDEX": "9999",
            "KBATCH_INDEX_MAP": str(mapping),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "19998", done.stderr


# --------------------------------------------------------------------------- spec hash

PINNED_SPEC = StageSpec(
    image="ghcr.io/acme/etl:1.0",
    command=["python", "-m", "etl"],
    args=["--date", "2024-01-01"],
    env={"MODE": "full", "PW": EnvFromSecret("db", "password")},
    completions=10,
)


def test_spec_hash_is_pinned() -> None:
    # a stored contract (Job annotations, ledger): changing it makes running Jobs unadoptable
    assert spec_hash(PINNED_SPEC) == "9381a09d4bc3e7b6594442915f875025ccf749320805eaa0f24d0a624be7f5bc"
    # ... which is sha256 of this canonical JSON, written out by hand
    payload = {
        "v": 1,
        "image": "ghcr.io/acme/etl:1.0",
        "command": ["python", "-m", "etl"],
        "args": ["--date", "2024-01-01"],
        "env": [
            {"name": "MODE", "value": "full"},
            {
                "name": "PW",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": False}},
            },
        ],
        "env_from": [],
        "working_dir": None,
        "container_name": "main",
        "volumes": [],
        "volume_mounts": [],
        "job_template": None,
        "completions": 10,
        "completion_mode": "Indexed",
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(text.encode()).hexdigest() == spec_hash(PINNED_SPEC)


def test_spec_hash_is_stable_across_processes() -> None:
    code = (
        "from airflow_provider_kbatch.spec.manifest import spec_hash;"
        "from tests.unit.spec.test_manifest import PINNED_SPEC;"
        "print(spec_hash(PINNED_SPEC))"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert out.stdout.strip() == spec_hash(PINNED_SPEC)


@pytest.mark.parametrize(
    "change",
    [
        {"image": "ghcr.io/acme/etl:1.1"},
        {"command": ["python", "-m", "etl2"]},
        {"args": ["--date", "2024-01-02"]},
        {"env": {"MODE": "incremental", "PW": EnvFromSecret("db", "password")}},
        {"env": {"MODE": "full", "PW": EnvFromSecret("db", "other-key")}},
        {"env_from": [SecretEnvSource("x")]},
        {"working_dir": "/w"},
        {"completions": 11},
        {"completion_mode": "NonIndexed"},
        {"volumes": [{"name": "v", "emptyDir": {}}]},
        {"volume_mounts": [{"name": "v", "mountPath": "/v"}]},
        {"job_template": {"spec": {"template": {"spec": {"hostAliases": []}}}}},
        {"container_name": "work"},
    ],
)
def test_spec_hash_changes_with_the_work(change: dict[str, Any]) -> None:
    assert spec_hash(PINNED_SPEC.replace(**change)) != spec_hash(PINNED_SPEC)


@pytest.mark.parametrize(
    "change",
    [
        {"parallelism": 50},
        {"active_deadline_seconds": 10},
        {"ttl_seconds_after_finished": None},
        {"priority_class_name": "high"},
        {"queue_name": "q"},
        {"suspend": True},
        {"backoff_limit": 1},
        {"resources": {"limits": {"memory": "8Gi"}}},
        {"labels": {"a": "b"}},
        {"completion_mode": "Indexed"},  # the default, spelled out
    ],
)
def test_spec_hash_ignores_how_and_when(change: dict[str, Any]) -> None:
    assert spec_hash(PINNED_SPEC.replace(**change)) == spec_hash(PINNED_SPEC)


def test_spec_hash_ignores_template_key_order() -> None:
    a = PINNED_SPEC.replace(job_template={"spec": {"a": 1, "b": [1, 2]}, "metadata": {}})
    b = PINNED_SPEC.replace(job_template={"metadata": {}, "spec": {"b": [1, 2], "a": 1}})
    assert spec_hash(a) == spec_hash(b)


# --------------------------------------------------------------------------- deep_merge


@pytest.mark.parametrize(
    ("base", "override", "expected"),
    [
        ({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 9}}, {"a": 1, "b": {"c": 9, "d": 2}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"x": 1}}, {"a": 5}, {"a": 5}),
        ({"a": 1}, {"a": None}, {"a": None}),
        (
            {"containers": [{"name": "a", "image": "1", "ports": [1]}, {"name": "b", "image": "2"}]},
            {"containers": [{"name": "b", "image": "3"}, {"name": "c", "image": "4"}]},
            {
                "containers": [
                    {"name": "a", "image": "1", "ports": [1]},
                    {"name": "b", "image": "3"},
                    {"name": "c", "image": "4"},
                ]
            },
        ),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
            {
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "B", "value": "2"},
                ]
            },
        ),
        (
            {"volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}]},
            {"volumeMounts": [{"name": "w", "mountPath": "/b"}]},
            {"volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "w", "mountPath": "/b"}]},
        ),
        ({"tolerations": [{"key": "a"}]}, {"tolerations": [{"key": "b"}]}, {"tolerations": [{"key": "b"}]}),
        ({"containers": ["odd"]}, {"containers": [{"name": "x"}]}, {"containers": [{"name": "x"}]}),
    ],
)
def test_deep_merge(base: Any, override: Any, expected: Any) -> None:
    before = json.dumps(base)
    assert deep_merge(base, override) == expected
    assert json.dumps(base) == before  # inputs untouched


def test_deep_merge_returns_copies() -> None:
    override = {"a": {"b": [1]}}
    merged = deep_merge({}, override)
    merged["a"]["b"].append(2)
    assert override == {"a": {"b": [1]}}


@pytest.mark.parametrize("shell", [s for s in ("dash", "bash", "busybox", "mksh") if shutil.which(s)])
def test_shim_is_portable_across_shells(shell: str) -> None:
    argv = [shutil.which(shell) or shell, *(["sh"] if shell == "busybox" else []), "-c", RESUME_SHIM, "shim"]
    mapping = IndexSet.parse("1-3,6,8-9")
    for local in range(len(mapping)):
        done = subprocess.run(
            [*argv, "sh", "-c", 'echo "$KBATCH_INDEX"'],
            env={
                "PATH": os.environ.get("PATH", "/bin"),
                "JOB_COMPLETION_INDEX": str(local),
                "KBATCH_INDEX_MAP": str(mapping),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.strip() == str(mapping.nth(local)), (shell, done.stderr)


def test_extra_env_may_reference_secrets() -> None:
    m = _build(extra_env={"TOKEN": EnvFromSecret("tok", "value")})
    assert _env(_container(m))["TOKEN"] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "tok", "key": "value", "optional": False}},
    }
