"""The simulated node's pure parts: the behaviour annotation, the ending of a pod, its status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster.components import component_command, scheduler_config
from airflow_provider_kbatch.devcluster.processnode.simulated import (
    BEHAVIOUR_ANNOTATION,
    SIMULATED_LABEL,
    BehaviourError,
    Ending,
    parse_behaviour,
    pod_ending,
    pod_request,
    status_body,
)

BEHAVIOUR = {
    "seconds": 0.5,
    "message": '{"n": {index}}',
    "failures": [
        {"indexes": "3,10-12", "generations": "1", "exitCode": 3, "message": "bad {index}"},
        {"indexes": "20", "below_failures": 2, "exitCode": 7},
    ],
}


def pod(
    completion: int,
    *,
    index_map: str | None = None,
    generation: int = 1,
    failures: int | None = None,
    behaviour: Any = BEHAVIOUR,
) -> dict[str, Any]:
    annotations = {
        "batch.kubernetes.io/job-completion-index": str(completion),
        BEHAVIOUR_ANNOTATION: json.dumps(behaviour),
    }
    if index_map:
        annotations["kbatch.io/index-map"] = index_map
    if failures is not None:
        annotations["batch.kubernetes.io/job-index-failure-count"] = str(failures)
    return {
        "metadata": {
            "uid": "u1",
            "annotations": annotations,
            "labels": {"kbatch.io/attempt": str(generation)},
        },
        "spec": {"containers": [{"name": "main", "image": "img"}, {"name": "side", "image": "img"}]},
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"completion": 0}, Ending(0.5, 0, '{"n": 0}')),
        ({"completion": 3}, Ending(0.5, 3, "bad 3")),
        ({"completion": 11}, Ending(0.5, 3, "bad 11")),
        # the second Airflow try (generation 2) of a failed index succeeds
        ({"completion": 3, "generation": 2}, Ending(0.5, 0, '{"n": 3}')),
        # a resumed Job: local index 1 of map "3,10-12" is logical index 10
        ({"completion": 1, "index_map": "3,10-12"}, Ending(0.5, 3, "bad 10")),
        ({"completion": 1, "index_map": "3,10-12", "generation": 2}, Ending(0.5, 0, '{"n": 10}')),
        # fails twice (backoffLimitPerIndex), then succeeds
        ({"completion": 20, "failures": 0}, Ending(0.5, 7, '{"n": 20}')),
        ({"completion": 20, "failures": 1}, Ending(0.5, 7, '{"n": 20}')),
        ({"completion": 20, "failures": 2}, Ending(0.5, 0, '{"n": 20}')),
    ],
)
def test_a_pod_ends_as_its_behaviour_says_at_its_logical_index(
    kwargs: dict[str, Any], expected: Ending
) -> None:
    completion = kwargs.pop("completion")
    assert pod_ending(pod(completion, **kwargs)) == expected


def test_no_annotation_succeeds_at_once() -> None:
    bare = {"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "c"}]}}
    assert pod_ending(bare) == Ending(0.0, 0, "")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"seconds": -1}', "seconds"),
        ('{"exitCode": 300}', "exitCode"),
        ('{"exitCode": true}', "exitCode"),
        ('{"message": 3}', "message"),
        ('{"failures": [{"indexes": "3-1"}]}', "failures[0].indexes"),
        ('{"failures": [{"below_failures": 0}]}', "below_failures"),
        ('{"failures": [3]}', "failures[0]"),
    ],
)
def test_bad_behaviours_are_named(text: str, error: str) -> None:
    with pytest.raises(BehaviourError, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse_behaviour(text)


def test_a_failure_rule_defaults_to_exit_code_1() -> None:
    assert parse_behaviour('{"failures": [{"indexes": "1"}]}').ending(1, None, 0).exit_code == 1


def test_pod_request_selects_and_tolerates_the_simulated_nodes() -> None:
    request = pod_request({"exitCode": 0})
    assert request["node_selector"] == {SIMULATED_LABEL: "true"}
    assert request["tolerations"][0]["key"] == SIMULATED_LABEL
    assert json.loads(request["annotations"][BEHAVIOUR_ANNOTATION]) == {"exitCode": 0}
    with pytest.raises(BehaviourError):
        pod_request({"exitCode": -1})


def test_status_running_then_terminated_like_the_kubelet() -> None:
    p = pod(3)
    running = status_body(p, started=1000.0, now=1000.0, ending=None)
    assert running["phase"] == "Running"
    assert [s["state"] for s in running["containerStatuses"]] == [
        {"running": {"startedAt": "1970-01-01T00:16:40Z"}}
    ] * 2
    failed = status_body(p, started=1000.0, now=1002.0, ending=Ending(2.0, 3, "bad 3"))
    assert failed["phase"] == "Failed"
    main, side = (s["state"]["terminated"] for s in failed["containerStatuses"])
    assert (main["exitCode"], main["reason"], main["message"]) == (3, "Error", "bad 3")
    assert (main["startedAt"], main["finishedAt"]) == ("1970-01-01T00:16:40Z", "1970-01-01T00:16:42Z")
    assert (side["exitCode"], side["reason"]) == (0, "Completed")
    assert "message" not in side
    ok = status_body(p, started=1000.0, now=1000.0, ending=Ending(0.0, 0, "{}"))
    assert ok["phase"] == "Succeeded"
    ready = {c["type"]: c["status"] for c in ok["conditions"]}
    assert ready["Ready"] == "False" and ready["Initialized"] == "True"


def test_scale_mode_raises_the_client_rates(tmp_path: Path) -> None:
    state = {
        "ports": {"kube-controller-manager": 1, "kube-scheduler": 2},
        "bin_dir": "/b",
        "client_qps": 400,
        "nodes": ["n0"],
        "simulated_nodes": ["kbatch-sim-0"],
        "id": "x",
        "ports_kubelet": 3,
    }
    common = {
        "state_dir": tmp_path,
        "kubeconfig": tmp_path / "kubeconfig",
        "node_state_dir": tmp_path / "node",
        "node_cpu": "8",
        "node_memory": "16Gi",
        "environ": {},
    }
    kcm, _ = component_command("kube-controller-manager", state, **common)
    assert "--kube-api-qps=400" in kcm and "--kube-api-burst=800" in kcm
    scheduler, _ = component_command("kube-scheduler", state, **common)
    assert f"--config={tmp_path / 'scheduler-config.json'}" in scheduler
    config = scheduler_config(tmp_path / "kubeconfig", 400)
    assert config["clientConnection"]["qps"] == 400.0
    node, _ = component_command("node", {**state, "ports": {"kubelet": 3}}, **common)
    assert "--simulated-node=kbatch-sim-0" in node
    plain, _ = component_command("kube-scheduler", {**state, "client_qps": None}, **common)
    assert not any(arg.startswith("--config") for arg in plain)
