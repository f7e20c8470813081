"""Kueue's objects and configuration for the dev cluster (devcluster/kueue.py), from a module tree
laid out like ``sigs.k8s.io/kueue``'s ``config/components`` (written here, a few lines each)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from airflow_provider_kbatch.devcluster import kueue
from airflow_provider_kbatch.devcluster.components import component_command

BASE = "https://127.0.0.1:19443"


def _write(path: Path, *docs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))


def _webhook(name: str, group: str, resource: str, path: str) -> dict[str, object]:
    return {
        "name": name,
        "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": path}},
        "rules": [
            {"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}
        ],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }


def module(tmp_path: Path) -> Path:
    crd = tmp_path / "config" / "components" / "crd"
    for name in ("workloads", "resourceflavors"):
        _write(crd / "bases" / f"kueue.x-k8s.io_{name}.yaml", {"kind": "CustomResourceDefinition",
               "metadata": {"name": f"{name}.kueue.x-k8s.io"}, "spec": {"group": "kueue.x-k8s.io"}})  # fmt: skip
        _write(crd / "patches" / f"webhook_in_{name}.yaml", {"metadata": {"name": f"{name}.kueue.x-k8s.io"}})
    # the resourceflavors patch is commented out, as in the release
    (crd / "kustomization.yaml").write_text(
        "resources: []\npatches:\n- path: patches/webhook_in_workloads.yaml\n#- path: patches/webhook_in_resourceflavors.yaml\n"
    )
    _write(
        tmp_path / "config" / "components" / "webhook" / "manifests.yaml",
        {
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mutating-webhook-configuration"},
            "webhooks": [
                _webhook("mjob.kb.io", "batch", "jobs", "/mutate-batch-v1-job"),
                _webhook("mpod.kb.io", "", "pods", "/mutate--v1-pod"),
                _webhook("mrayjob.kb.io", "ray.io", "rayjobs", "/mutate-ray-io-v1-rayjob"),
            ],
        },
        {
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validating-webhook-configuration"},
            "webhooks": [_webhook("vworkload.kb.io", "kueue.x-k8s.io", "workloads", "/validate-workload")],
        },
    )
    return tmp_path


def test_crds_get_the_conversion_webhooks_the_kustomization_enables_by_url(tmp_path: Path) -> None:
    crds = {c["metadata"]["name"]: c for c in kueue.crds(module(tmp_path), BASE, b"CA")}
    assert set(crds) == {"workloads.kueue.x-k8s.io", "resourceflavors.kueue.x-k8s.io"}
    assert crds["workloads.kueue.x-k8s.io"]["spec"]["conversion"] == {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {"url": f"{BASE}/convert", "caBundle": base64.b64encode(b"CA").decode()},
            "conversionReviewVersions": ["v1"],
        },
    }
    assert "conversion" not in crds["resourceflavors.kueue.x-k8s.io"]["spec"]


def test_only_kueue_and_job_webhooks_are_installed_each_calling_the_loopback_url(tmp_path: Path) -> None:
    mutating, validating = kueue.webhook_configurations(module(tmp_path), BASE, b"CA")
    assert mutating["metadata"] == {"name": kueue.MUTATING}
    assert [w["name"] for w in mutating["webhooks"]] == ["mjob.kb.io"]  # no pod or ray webhook
    assert mutating["webhooks"][0]["clientConfig"] == {
        "url": f"{BASE}/mutate-batch-v1-job",
        "caBundle": base64.b64encode(b"CA").decode(),
    }
    assert mutating["webhooks"][0]["failurePolicy"] == "Fail"
    assert validating["metadata"] == {"name": kueue.VALIDATING}
    assert [w["clientConfig"]["url"] for w in validating["webhooks"]] == [f"{BASE}/validate-workload"]


def test_the_configuration_manages_only_labelled_jobs_on_loopback_without_cert_management() -> None:
    config = kueue.configuration(webhook_port=19443, health_port=18081, cert_dir=Path("/d/kueue/certs"))
    assert config["manageJobsWithoutQueueName"] is False
    assert config["integrations"] == {"frameworks": ["batch/job"]}
    assert config["internalCertManagement"] == {"enable": False}
    assert config["webhook"] == {"host": "127.0.0.1", "port": 19443, "certDir": "/d/kueue/certs"}
    assert config["health"] == {"healthProbeBindAddress": "127.0.0.1:18081"}
    assert config["metrics"] == {"bindAddress": "0"}
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["featureGates"] == {"VisibilityOnDemand": False}


def test_the_kueue_component_runs_the_built_binary_with_the_configuration_and_kubeconfig() -> None:
    state = {"ports": {}, "bin_dir": "/cache/bin", "kueue_bin": "/cache/tools/kueue"}
    argv, env = component_command(
        "kueue",
        state,
        state_dir=Path("/d"),
        kubeconfig=Path("/d/kubeconfig"),
        node_state_dir=Path("/d/node"),
        node_cpu="4",
        node_memory="8Gi",
        environ={"PATH": "/bin"},
    )
    assert argv[:2] == ["/cache/tools/kueue", "--config=/d/kueue/config.yaml"]
    assert env == {"PATH": "/bin", "KUBECONFIG": "/d/kubeconfig"}
