"""The dev cluster's processes and how each starts (pure): etcd, kube-apiserver,
kube-controller-manager with the controllers a batch cluster needs, kube-scheduler and the
process node, each a command line and an environment, all on 127.0.0.1 with the ports chosen
for the cluster; and the admin kubeconfig every client uses.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Start order; ``down`` stops in reverse. A cluster with Kueue starts "kueue" after them.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node")
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "disruption-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "replicaset-controller",
    "deployment-controller",
    "endpointslice-controller",
    "resourcequota-controller",
)
DEVCLUSTER_ID_ENV = "KBATCH_DEVCLUSTER_ID"
FAST_BACKOFF_ENV = "KBATCH_DEV_JOB_POD_FAILURE_BACKOFF"


def component_command(
    component: str,
    state: Mapping[str, Any],
    *,
    state_dir: Path,
    kubeconfig: Path,
    node_state_dir: Path,
    node_cpu: str,
    node_memory: str,
    environ: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``component`` for the cluster whose state (ports,
    binaries, id, nodes) is ``state``."""
    ports = state["ports"]
    pki = state_dir / "pki"
    binary = str(Path(state["bin_dir"]) / "kbatch-k8s")
    env = dict(environ)
    d = state_dir
    if component == "etcd":
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            binary, "etcd", "--name=kbatch", f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kbatch={peer}", "--unsafe-no-fsync", "--log-level=warn",
        ], env  # fmt: skip
    if component == "kube-apiserver":
        return [
            binary, "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-priority-and-fairness=false", "--profiling=false",
            f"--cert-dir={d / 'apiserver-certs'}", "--v=1",
        ], env  # fmt: skip
    if component == "kube-controller-manager":
        if state.get("fast_job_backoff"):
            env[FAST_BACKOFF_ENV] = state["fast_job_backoff"]
        return [
            binary, "kube-controller-manager", f"--kubeconfig={kubeconfig}",
            "--leader-elect=false", f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kube-controller-manager']}",
            "--profiling=false", "--v=1", *_controller_scale_flags(state),
        ], env  # fmt: skip
    if component == "kube-scheduler":
        return [
            binary, "kube-scheduler", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kube-scheduler']}",
            "--profiling=false", "--v=1", *_scheduler_scale_flags(state, d),
        ], env  # fmt: skip
    if component == "node":
        env[DEVCLUSTER_ID_ENV] = state["id"]
        cmd = [
            sys.executable, "-m", "airflow_provider_kbatch.devcluster.node",
            f"--kubeconfig={kubeconfig}", f"--state-dir={node_state_dir}",
            f"--kubelet-port={ports['kubelet']}", f"--cpu={node_cpu}", f"--memory={node_memory}",
        ]  # fmt: skip
        if state.get("fast_job_backoff"):
            cmd.append("--restart-backoff=1")  # OnFailure container restarts, like the Job backoff
        for name in state["nodes"]:
            cmd.append(f"--node-name={name}")
        for name in state.get("simulated_nodes") or ():
            cmd.append(f"--simulated-node={name}")
        return cmd, env
    if component == "kueue":  # optional (`up --kueue`): Kueue's manager, configured by kueue.py
        env["KUBECONFIG"] = str(kubeconfig)
        config = d / "kueue" / "config.yaml"
        return [state["kueue_bin"], f"--config={config}", "--zap-log-level=2", "--zap-devel=false"], env
    raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}, kueue")


def _controller_scale_flags(state: Mapping[str, Any]) -> list[str]:
    """Scale mode (``client_qps``): the controller-manager's client rate (default 20 QPS, burst
    30) and the Job controller's workers (default 5) raised, so pod creation and finalizer removal
    keep up with simulated nodes."""
    qps = state.get("client_qps")
    if not qps:
        return []
    return [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * int(qps)}", "--concurrent-job-syncs=20"]


def _scheduler_scale_flags(state: Mapping[str, Any], state_dir: Path) -> list[str]:
    """Scale mode: a ``KubeSchedulerConfiguration`` whose ``clientConnection`` raises the
    scheduler's rate (default 50 QPS, burst 100: binding is one request per pod)."""
    qps = state.get("client_qps")
    if not qps:
        return []
    return [f"--config={state_dir / 'scheduler-config.json'}"]


def scheduler_config(kubeconfig: Path, qps: int) -> dict[str, Any]:
    """The scheduler's configuration in scale mode (written by ``DevCluster`` before it starts)."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": float(qps), "burst": 2 * int(qps)},
        "leaderElection": {"leaderElect": False},
    }


def admin_kubeconfig(server: str, ca_cert: bytes, token: str) -> dict[str, Any]:
    """The kubeconfig of the cluster's admin (a static token in ``system:masters``)."""
    ca_data = base64.b64encode(ca_cert).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kbatch-dev", "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "kbatch-dev", "context": {"cluster": "kbatch-dev", "user": "admin"}}],
        "current-context": "kbatch-dev",
    }
