"""What this machine contributes to the process node: the Node object a kubelet would register
(labels, capacity, conditions, addresses, ``nodeInfo`` read from the host), the environment every
container starts from, and the host tools that start containers."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airflow_provider_kbatch.devcluster.processnode.launch import Tools
from airflow_provider_kbatch.devcluster.processnode.podstatus import rfc3339


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def micro_time(ts: float) -> str:
    """``metav1.MicroTime``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def node_object(
    name: str, capacity: dict[str, str], port: int, version: str, *, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The Node as the kubelet registers it (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": _arch(),
                "kbatch.io/process-node": "true",
                **(labels or {}),
            },
        },
        "spec": {},
        "status": node_status(name, capacity, port, version, ready=True, now=time.time()),
    }


def node_status(
    name: str, capacity: dict[str, str], port: int, version: str, *, ready: bool, now: float
) -> dict[str, Any]:
    stamp = rfc3339(now)

    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "conditions": [
            cond("MemoryPressure", False, "KubeletHasSufficientMemory", "process node"),
            cond("DiskPressure", False, "KubeletHasNoDiskPressure", "process node"),
            cond("PIDPressure", False, "KubeletHasSufficientPID", "process node"),
            cond(
                "Ready",
                ready,
                "KubeletReady" if ready else "KubeletNotReady",
                "kbatch process node is posting ready status" if ready else "kbatch process node stopped",
            ),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": "kbatch-process-node://0.1.0",
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


def service_env(server: str) -> dict[str, str]:
    """``KUBERNETES_SERVICE_*`` pointing at the real API server (no service network here)."""
    url = urlparse(server)
    host, port = url.hostname or "127.0.0.1", str(url.port or 443)
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
    }


def base_env() -> dict[str, str]:
    """What every container starts from: the node's PATH with its own interpreter first."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if path.split(os.pathsep)[0] != bindir:
        path = bindir + os.pathsep + path
    env = {"PATH": path}
    if os.environ.get("KBATCH_DEVCLUSTER_ID"):
        env["KBATCH_DEVCLUSTER_ID"] = os.environ["KBATCH_DEVCLUSTER_ID"]
    return env


def host_tools() -> Tools:
    def which(name: str) -> str:
        found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", ""))
        if not found:
            raise SystemExit(f"kbatch process node: {name} not found; it is needed to start containers")
        return found

    return Tools(
        unshare=which("unshare"),
        sh=which("sh"),
        mount=which("mount"),
        mkdir=which("mkdir"),
        hostname=shutil.which("hostname"),
        setpriv=which("setpriv"),
        as_root=os.geteuid() == 0,
    )
