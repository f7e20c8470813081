from __future__ import annotations

from pathlib import Path

from airflow_provider_kbatch.devcluster.node import base_env, micro_time, node_object, service_env
from airflow_provider_kbatch.devcluster.processnode.provisioner import volume_for_claim, wants_volume


def test_node_object_as_the_kubelet_registers_it() -> None:
    node = node_object("kbatch-node-0", {"cpu": "8", "memory": "16Gi", "pods": "110"}, 10250, "v1.36.3")
    status = node["status"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "kbatch-node-0"
    assert status["capacity"] == status["allocatable"] == {"cpu": "8", "memory": "16Gi", "pods": "110"}
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_service_env_points_at_the_real_api_server() -> None:
    env = service_env("https://127.0.0.1:6443")
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"


def test_base_env_puts_the_node_interpreter_first() -> None:
    import os
    import sys

    assert base_env()["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_micro_time() -> None:
    assert micro_time(1_000_000_000.25) == "2001-09-09T01:46:40.250000Z"


def test_volume_for_claim() -> None:
    claim = {
        "metadata": {"name": "data", "namespace": "ns", "uid": "abc"},
        "spec": {
            "storageClassName": "kbatch-local",
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "2Gi"}},
        },
        "status": {"phase": "Pending"},
    }
    assert wants_volume(claim)
    sc = {"metadata": {"name": "kbatch-local"}, "reclaimPolicy": "Delete"}
    pv = volume_for_claim(claim, sc, Path("/state/volumes"))
    assert pv["metadata"]["name"] == "pvc-abc"
    assert pv["spec"]["hostPath"]["path"] == "/state/volumes/pvc-abc"
    assert pv["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "data",
        "uid": "abc",
    }
    assert pv["spec"]["capacity"] == {"storage": "2Gi"} and pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    bound = dict(claim, spec=dict(claim["spec"], volumeName="pvc-abc"))
    assert not wants_volume(bound)
