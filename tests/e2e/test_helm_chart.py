"""``helm install`` of deploy/helm/kbatch on the local cluster, a DAG run as the chart's
ServiceAccount in the chart's namespace (real Airflow 3, ``airflow dags test``), ``helm uninstall``.

* the release's namespace enforces Pod Security ``restricted``: a pod without a security context
  is refused there (and accepted in an unlabelled namespace), and every pod of the stage was
  admitted (kbatch's default pods pass it);
* the DAG's ``kbatch_helm`` connection holds only a token of the chart's ``kbatch-airflow``
  ServiceAccount (no admin kubeconfig in the environment): everything the stage did went through
  the chart's Role; the Job, the ledger and the workspace claim are in the connection's namespace;
* the pods run as ``kbatch-stage`` (no token mounted), at the ``kbatch-critical`` priority, with the
  LimitRange's default resources, counted by the ResourceQuota; the workspace claim is bound to a
  volume of the chart's StorageClass;
* ``helm uninstall`` leaves nothing of ours: no Namespace, PriorityClass, StorageClass of the
  release, no volume of its claims, no release record.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterHandle, dump, wait_until
from tests.e2e.conftest import AirflowEnv
from tests.helmchart import CHART, helm, set_flags
from tests.integration.test_rbac import service_account_kubeconfig

DAG_ID = "kbatch_test_helm"
INSTANCE = "app.kubernetes.io/instance"


def _exists(read: Any) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        read()
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def test_install_run_a_dag_as_the_charts_service_account_and_uninstall(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client as k8s

    release, stages = f"kbatch-{secrets.token_hex(3)}", f"kbatch-helm-{secrets.token_hex(3)}"
    values = {
        "namespace.name": stages,
        "workspace.storageClass.create": True,
        "workspace.storageClass.provisioner": "kbatch.io/process-node",
        "workspace.storageClass.volumeBindingMode": "Immediate",
    }
    kubeconfig = devcluster.kubeconfig
    # the release record lives in the fixture's namespace; the chart creates the stages' one
    install = helm("install", release, str(CHART), "-n", namespace, *set_flags(values), kubeconfig=kubeconfig)
    try:
        assert "STATUS: deployed" in install.stdout, install.stdout
        _run_the_dag(airflow_env, devcluster, stages, namespace, tmp_path)
    finally:
        uninstall = helm("uninstall", release, "-n", namespace, "--wait", kubeconfig=kubeconfig, check=False)
    assert uninstall.returncode == 0, uninstall.stderr

    core, scheduling = devcluster.core(), k8s.SchedulingV1Api(devcluster.api())
    storage = k8s.StorageV1Api(devcluster.api())
    wait_until(
        lambda: not _exists(lambda: core.read_namespace(stages)), timeout=120, what=f"namespace {stages} gone"
    )
    wait_until(
        lambda: not core.list_persistent_volume(label_selector=f"kbatch.io/claim-namespace={stages}").items,
        timeout=60,
        what="the workspace's volume deleted",
    )
    selector = f"{INSTANCE}={release}"
    assert scheduling.list_priority_class(label_selector=selector).items == []
    assert storage.list_storage_class(label_selector=selector).items == []
    assert core.list_namespace(label_selector=selector).items == []
    assert core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={release}").items == []
    listed = json.loads(helm("list", "-a", "-n", namespace, "-o", "json", kubeconfig=kubeconfig).stdout)
    assert listed == [], listed


def _run_the_dag(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, stages: str, unlabelled: str, tmp_path: Path
) -> None:
    from kubernetes.client.exceptions import ApiException

    core, batch = devcluster.core(), devcluster.batch()
    labels = core.read_namespace(stages).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    # a pod with no security context at all: fine where nothing is enforced, refused in the chart's
    bare = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "main", "image": "x"}]}}
    core.create_namespaced_pod(unlabelled, bare, dry_run="All")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(stages, bare, dry_run="All")
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 403 and 'violates PodSecurity "restricted:latest"' in message, message

    wait_until(lambda: _exists(lambda: core.read_namespaced_service_account("kbatch-airflow", stages)))
    # the quota admission refuses objects it counts until the controller has computed the quota
    wait_until(
        lambda: core.read_namespaced_resource_quota("kbatch", stages).status.hard,
        timeout=60,
        what="the quota's first status",
    )
    sa_config = service_account_kubeconfig(devcluster, stages, "kbatch-airflow", tmp_path / "sa.kubeconfig")
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(sa_config), "namespace": stages}}
    env = {
        k: v for k, v in airflow_env.env.items() if k not in ("KUBECONFIG", "AIRFLOW_CONN_KUBERNETES_DEFAULT")
    }
    env["AIRFLOW_CONN_KBATCH_HELM"] = json.dumps(conn)
    proc = AirflowEnv(airflow_env.home, env).dags_test(DAG_ID)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert airflow_env.task_states(DAG_ID)[("ingest", -1)] == ("success", 1)

    (job,) = [
        j
        for j in batch.list_namespaced_job(stages).items
        if (j.metadata.annotations or {}).get("kbatch.io/dag-id") == DAG_ID
    ]
    assert job.status.succeeded == 2, dump(job.to_dict())
    pods = core.list_namespaced_pod(
        stages, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}"
    ).items
    assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods), dump(
        [p.status.to_dict() for p in pods]
    )
    for pod in pods:
        spec = pod.spec
        assert spec.service_account_name == "kbatch-stage"
        assert not any(v.projected for v in spec.volumes or []), "no API token mounted into a stage"
        assert (spec.priority_class_name, spec.priority) == ("kbatch-critical", 100000)
        assert (
            spec.security_context.run_as_non_root
            and spec.security_context.seccomp_profile.type == "RuntimeDefault"
        )
        for container in [*(spec.init_containers or []), *spec.containers]:
            ctx = container.security_context
            assert ctx.allow_privilege_escalation is False and ctx.capabilities.drop == ["ALL"], (
                container.name
            )
            resources = container.resources  # the stage states none: the LimitRange's defaults
            assert resources.requests == {"cpu": "100m", "memory": "128Mi"}, container.name
            assert resources.limits == {"cpu": "1", "memory": "1Gi"}, container.name
    ledgers = core.list_namespaced_config_map(stages, label_selector="kbatch.io/ledger=true").items
    assert len(ledgers) == 1, "the run ledger is in the chart's namespace"
    (claim,) = core.list_namespaced_persistent_volume_claim(stages).items
    assert claim.spec.storage_class_name == "kbatch-workspace" and claim.status.phase == "Bound"
    assert airflow_env.xcom(DAG_ID, "ingest")["completed_indexes"] == "0-1"
    quota = wait_until(
        lambda: (q := core.read_namespaced_resource_quota("kbatch", stages)).status.used and q,
        timeout=30,
        what="quota usage",
    )
    assert quota.status.used["count/jobs.batch"] == "1" and quota.status.used["persistentvolumeclaims"] == "1"
