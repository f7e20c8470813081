"""The Helm chart ``deploy/helm/kbatch`` with the real ``helm`` CLI (built from the Go module proxy)
and the real API server.

* ``helm lint --strict`` passes with the defaults and with every optional part on, and the values
  schema refuses a wrong value, naming it;
* ``helm template`` output is accepted by the API server (server-side dry run: the Namespace with
  its Pod Security labels, ServiceAccounts, Role and RoleBinding, PriorityClasses, ResourceQuota,
  LimitRange, StorageClass), and the objects read back as rendered;
* the Kueue objects (off by default) are checked against the openAPIV3 schemas of Kueue v0.17.0's
  own CRDs (downloaded from the module proxy): the cluster has no Kueue CRDs to dry-run against.

``helm install`` with a DAG run as the chart's ServiceAccount and ``helm uninstall`` are in
tests/e2e/test_helm_chart.py; the Role's rules are proven by tests/integration/test_rbac.py,
which renders this chart's templates/rbac.yaml.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_kbatch.devcluster.build import _go
from tests.conftest import ClusterHandle
from tests.helmchart import CHART, documents, helm, render, set_flags

pytestmark = pytest.mark.integration

KUEUE = "sigs.k8s.io/kueue@v0.17.0"
EVERYTHING = {
    "kueue.enabled": True,
    "workspace.storageClass.create": True,
    "workspace.storageClass.provisioner": "kbatch.io/process-node",
    "airflow.extraSubjects": [{"kind": "ServiceAccount", "name": "airflow-worker", "namespace": "airflow"}],
}


def test_the_chart_lints_and_its_schema_refuses_wrong_values() -> None:
    # the binary's stamps (devcluster/tools.py): its version, and the Kubernetes version it assumes
    # without a cluster, which the chart's kubeVersion (>=1.30) needs (unstamped helm says 1.20)
    assert helm("version", "--short").stdout.startswith("v3.22.0"), "helm v3.22.0 from the Go module proxy"
    for values in ({}, EVERYTHING):
        out = helm("lint", "--strict", str(CHART), *set_flags(values)).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    bad = helm(
        "lint",
        str(CHART),
        *set_flags({"namespace.podSecurity.enforce": "strict", "priorityClasses.critical.value": "high"}),
        check=False,
    )
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "/namespace/podSecurity/enforce" in out and "restricted" in out, out
    assert "/priorityClasses/critical/value" in out, out
    missing = helm(
        "template", "x", str(CHART), *set_flags({"workspace.storageClass.create": True}), check=False
    )
    assert (
        missing.returncode != 0
        and "workspace.storageClass.provisioner: required with create=true" in missing.stderr
    )


def _kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_the_rendered_chart_is_accepted_by_the_api_server(devcluster: ClusterHandle, namespace: str) -> None:
    suffix = secrets.token_hex(3)
    values = {
        **EVERYTHING,
        "kueue.enabled": False,
        "namespace.name": namespace,  # exists: the dry run may "update" it; namespaced objects go in it
        "priorityClasses.critical.name": f"kbatch-critical-{suffix}",
        "priorityClasses.bestEffort.name": f"kbatch-best-effort-{suffix}",
        "workspace.storageClass.name": f"kbatch-workspace-{suffix}",
    }
    stream = render(values)
    kinds = _kinds(documents(stream))
    assert sorted(kinds) == [
        "LimitRange",
        "Namespace",
        "PriorityClass",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "StorageClass",
    ], sorted(kinds)
    proc = subprocess.run(
        [*devcluster.kubectl(), "apply", "--dry-run=server", "-o", "json", "-f", "-"],
        input=stream,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    accepted = _kinds(json.loads(proc.stdout)["items"])
    assert {k: len(v) for k, v in accepted.items()} == {k: len(v) for k, v in kinds.items()}
    (ns,) = accepted["Namespace"]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    assert labels["kubernetes.io/metadata.name"] == namespace  # the server's own label, kept
    priorities = {
        p["metadata"]["name"]: (p["value"], p["preemptionPolicy"]) for p in accepted["PriorityClass"]
    }
    assert priorities == {
        f"kbatch-critical-{suffix}": (100000, "PreemptLowerPriority"),
        f"kbatch-best-effort-{suffix}": (-10, "Never"),
    }
    (limits,) = accepted["LimitRange"]
    assert limits["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}
    (quota,) = accepted["ResourceQuota"]
    assert quota["spec"]["hard"]["count/jobs.batch"] == "1k"  # 1000, as the server canonicalizes it
    stage_sa = next(s for s in accepted["ServiceAccount"] if s["metadata"]["name"] == "kbatch-stage")
    assert stage_sa["automountServiceAccountToken"] is False
    (binding,) = accepted["RoleBinding"]
    assert [s["name"] for s in binding["subjects"]] == ["kbatch-airflow", "airflow-worker"]
    # a dry run: nothing was created
    from kubernetes import client as k8s

    scheduling = k8s.SchedulingV1Api(devcluster.api())
    names = {p.metadata.name for p in scheduling.list_priority_class().items}
    assert f"kbatch-critical-{suffix}" not in names
    assert devcluster.core().list_namespaced_resource_quota(namespace).items == []


def _kueue_crds() -> dict[str, dict[str, Any]]:
    """kind -> the storage version's openAPIV3Schema, from Kueue's module (Go module proxy)."""
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", KUEUE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",  # outside any Go module
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bases = Path(json.loads(proc.stdout)["Dir"]) / "config" / "components" / "crd" / "bases"
    schemas = {}
    for plural in ("resourceflavors", "clusterqueues", "localqueues"):
        crd = yaml.load((bases / f"kueue.x-k8s.io_{plural}.yaml").read_text(), Loader=yaml.CSafeLoader)
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        schemas[crd["spec"]["names"]["kind"]] = {
            "version": version["name"],
            **version["schema"]["openAPIV3Schema"],
        }
    return schemas


def test_the_optional_kueue_queues_match_kueues_own_crds() -> None:
    import jsonschema

    assert not [d for d in documents(render()) if d["apiVersion"].startswith("kueue.")], "off by default"
    docs = [
        d
        for d in documents(render({"kueue.enabled": True, "namespace.name": "batch"}))
        if "kueue" in d["apiVersion"]
    ]
    kinds = _kinds(docs)
    assert sorted(kinds) == ["ClusterQueue", "LocalQueue", "ResourceFlavor"]
    schemas = _kueue_crds()
    for doc in docs:
        schema = dict(schemas[doc["kind"]])
        version = schema.pop("version")
        assert doc["apiVersion"] == f"kueue.x-k8s.io/{version}", "the CRD's storage version"
        jsonschema.validate(
            {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}, schema
        )
    (cq,) = kinds["ClusterQueue"]
    assert cq["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "batch"}}
    (group,) = cq["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory"]
    assert group["flavors"][0]["name"] == kinds["ResourceFlavor"][0]["metadata"]["name"]
    (lq,) = kinds["LocalQueue"]
    assert lq["metadata"]["namespace"] == "batch" and lq["spec"]["clusterQueue"] == cq["metadata"]["name"]
    # and the schema check is not vacuous: a misspelt field of Kueue's is refused
    broken = {"spec": {**cq["spec"], "resourceGroups": [{"coveredResources": ["cpu"], "flavors": "x"}]}}
    schema = dict(schemas["ClusterQueue"])
    schema.pop("version")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
