"""How each process of the dev cluster starts (pure): command lines, environments, the kubeconfig."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from airflow_provider_kbatch.devcluster.components import (
    COMPONENTS,
    DEVCLUSTER_ID_ENV,
    FAST_BACKOFF_ENV,
    admin_kubeconfig,
    component_command,
)

STATE = {
    "id": "c0ffee",
    "bin_dir": "/cache/bin",
    "nodes": ["kbatch-node-0", "kbatch-node-1"],
    "ports": {
        "etcd": 2379,
        "etcd-peer": 2380,
        "kube-apiserver": 6443,
        "kube-controller-manager": 10257,
        "kube-scheduler": 10259,
        "kubelet": 10250,
    },
}


def command(component: str, **state: object) -> tuple[list[str], dict[str, str]]:
    return component_command(
        component,
        {**STATE, **state},
        state_dir=Path("/d"),
        kubeconfig=Path("/d/kubeconfig"),
        node_state_dir=Path("/d/node"),
        node_cpu="4",
        node_memory="8Gi",
        environ={"PATH": "/bin"},
    )


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_listens_on_loopback_only(component: str) -> None:
    argv, env = command(component)
    assert env["PATH"] == "/bin"
    if component != "node":
        assert argv[:2] == ["/cache/bin/kbatch-k8s", component]
    assert not [a for a in argv if "0.0.0.0" in a]


def test_the_node_runs_this_interpreter_for_every_node_with_the_cluster_id() -> None:
    argv, env = command("node")
    assert argv[:3] == [sys.executable, "-m", "airflow_provider_kbatch.devcluster.node"]
    assert [a for a in argv if a.startswith("--node-name=")] == [
        "--node-name=kbatch-node-0",
        "--node-name=kbatch-node-1",
    ]
    assert {"--kubelet-port=10250", "--cpu=4", "--memory=8Gi", "--state-dir=/d/node"} <= set(argv)
    assert env[DEVCLUSTER_ID_ENV] == "c0ffee"
    assert "--restart-backoff=1" not in argv


def test_fast_job_backoff_reaches_the_controller_manager_and_the_node() -> None:
    _, env = command("kube-controller-manager", fast_job_backoff="200ms")
    assert env[FAST_BACKOFF_ENV] == "200ms"
    assert "--restart-backoff=1" in command("node", fast_job_backoff="200ms")[0]
    assert FAST_BACKOFF_ENV not in command("kube-controller-manager")[1]


def test_an_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown component 'kubelet'"):
        command("kubelet")


def test_the_admin_kubeconfig_carries_the_ca_and_the_token() -> None:
    config = admin_kubeconfig("https://127.0.0.1:6443", b"PEM", "secret")
    cluster = config["clusters"][0]["cluster"]
    assert cluster == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
    }
    assert config["users"] == [{"name": "admin", "user": {"token": "secret"}}]
    assert config["current-context"] == "kbatch-dev"
