"""The process node: stands in for the kubelet on a machine without a container runtime.

``python -m airflow_provider_kbatch.devcluster.node --kubeconfig K --state-dir D
--node-name kbatch-node-0 [--node-name ...] --kubelet-port P [--cpu 8 --memory 16Gi --pods 110]``

Registers each Node (capacity, ``Ready``, InternalIP 127.0.0.1, the kubelet port) and renews its
Lease in ``kube-node-lease``; watches the pods bound to its nodes and runs every container as a
local process (see ``processnode.pods``); provisions ``kbatch.io/process-node`` volumes; serves
``/containerLogs`` over HTTPS on 127.0.0.1; takes fault-injection requests on ``D/node.sock``.
SIGTERM stops every container (reported ``Failed``, reason ``Terminated``), marks the Nodes not
ready and exits.

Files under D: ``pods/<ns>_<pod>_<uid>/`` (``<container>.log`` in the CRI format, termination
message files, per-pod volumes, pid files), ``volumes/pvc-<uid>/`` (claims), ``kubelet/`` (the
serving certificate), ``node.json`` (pid, port, socket), ``node.sock``.

What differs from a kubelet (a development tool, not a sandbox):

- Images are ignored: commands run with this machine's tools and the node's ``PATH`` (its own
  interpreter first), default working directory ``/`` (``--working-dir``). No ``command``: the
  container fails with ``StartError``.
- Isolation is a private mount namespace and a UTS namespace (hostname) per container, and the
  pod's uid/gids (with ``CAP_DAC_READ_SEARCH``); network, PIDs and the rest of the filesystem are
  shared. Mount points missing on the host are created there (empty directories or files, e.g.
  ``/dev/termination-log``).
- ``limits.memory`` is enforced by polling resident memory each second (SIGKILL, ``OOMKilled``,
  exit code 137); CPU limits are not enforced.
- Probes, lifecycle hooks, ``exec``/``attach``/``port-forward`` and image pulls are not
  implemented; a running container is ready.
- Every container carries ``KUBERNETES_SERVICE_HOST``/``PORT`` of the real API server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airflow_provider_kbatch.devcluster.processnode.kubeapi import (
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ApiError,
    Informer,
    KubeClient,
    q,
)
from airflow_provider_kbatch.devcluster.processnode.launch import Tools
from airflow_provider_kbatch.devcluster.processnode.pods import NodeContext, PodWorker
from airflow_provider_kbatch.devcluster.processnode.podstatus import rfc3339
from airflow_provider_kbatch.devcluster.processnode.procs import MemoryWatch, sweep_pid_files
from airflow_provider_kbatch.devcluster.processnode.provisioner import Provisioner
from airflow_provider_kbatch.devcluster.processnode.server import (
    SOCKET_NAME,
    ControlServer,
    KubeletServer,
    ensure_serving_cert,
)

log = logging.getLogger("kbatch.node")

WARNING = (
    "kbatch process node: a DEVELOPMENT TOOL, NOT A SANDBOX. Containers run as plain local processes "
    "sharing this machine's filesystem, network and process table. Started as root, it runs them as "
    "the pod's runAsUser/runAsGroup but grants CAP_DAC_READ_SEARCH (they can read every file) so they "
    "can load the project's interpreter. The kubelet endpoint listens on 127.0.0.1 only, "
    "without authentication."
)
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
STATUS_SECONDS = 30
SHUTDOWN_GRACE = 5.0
SHUTDOWN_TIMEOUT = 15.0
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_kbatch.devcluster.node", description=__doc__
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--node-name", action="append", required=True, help="repeat for several nodes")
    parser.add_argument("--kubelet-port", type=int, required=True)
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument("--ephemeral-storage", default="100Gi")
    parser.add_argument(
        "--restart-backoff",
        type=float,
        default=10.0,
        help="first container restart delay in seconds, doubling up to --restart-backoff-max (kubelet: 10)",
    )
    parser.add_argument("--restart-backoff-max", type=float, default=300.0)
    parser.add_argument(
        "--working-dir", default="/", help="working directory of containers without workingDir"
    )
    parser.add_argument("--max-parallel-starts", type=int, default=8)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


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


def node_object(name: str, capacity: dict[str, str], port: int, version: str) -> dict[str, Any]:
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


class ProcessNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.names: list[str] = list(dict.fromkeys(args.node_name))
        self.state_dir: Path = args.state_dir.resolve()
        self.capacity = {
            "cpu": args.cpu,
            "memory": args.memory,
            "pods": str(args.pods),
            "ephemeral-storage": args.ephemeral_storage,
        }
        self.workers: dict[str, PodWorker] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        self.node_uids: dict[str, str] = {}
        self.version = "v0.0.0"
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ registry (servers)
    def find(self, namespace: str, name: str) -> PodWorker | None:
        uid = self.by_name.get((namespace, name))
        return self.workers.get(uid) if uid else None

    def running(self) -> list[dict[str, Any]]:
        return [
            {"namespace": w.namespace, "pod": w.name, "uid": w.uid, "container": c, "pid": p.pid}
            for w in self.workers.values()
            for c, p in w.procs.items()
        ]

    # ------------------------------------------------------------------ main
    async def run(self) -> None:
        log.warning(WARNING)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pods").mkdir(exist_ok=True)
        killed = sweep_pid_files(self.state_dir / "pods")
        if killed:
            log.warning("killed %d processes left behind by a previous run", killed)
        self.client = await KubeClient.from_kubeconfig(self.args.kubeconfig)
        self.version = str((await self.client.get("/version")).get("gitVersion", self.version))
        self.ctx = NodeContext(
            client=self.client,
            state_dir=self.state_dir,
            tools=host_tools(),
            allocatable=dict(self.capacity),
            service_env=service_env(self.client.host),
            base_env=base_env(),
            restart_backoff=self.args.restart_backoff,
            restart_backoff_cap=self.args.restart_backoff_max,
            working_dir=self.args.working_dir,
            start_limit=asyncio.Semaphore(self.args.max_parallel_starts),
            memory=MemoryWatch(),
        )
        if not self.ctx.tools.as_root:
            log.warning(
                "not running as root: containers run in a user namespace as this user; runAsUser is ignored"
            )
        cert = ensure_serving_cert(self.state_dir / "kubelet", self.names)
        kubelet = KubeletServer(self, self.state_dir / "pods", self.args.kubelet_port, cert)
        control = ControlServer(self, self.state_dir / SOCKET_NAME)
        await kubelet.start()
        await control.start()
        for name in self.names:
            await self._register(name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self._spawn(self.ctx.memory.run())
        self._spawn(Provisioner(self.client, self.state_dir / "volumes").run())
        for name in self.names:
            self._spawn(self._heartbeat(name))
            informer = Informer(self.client, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={name}"})
            self._spawn(informer.run(self._pod_event))
        self._write_info()
        log.info("nodes %s ready (kubelet port %d)", ", ".join(self.names), self.args.kubelet_port)
        await stop.wait()
        await self._shutdown(kubelet, control)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "kubelet_port": self.args.kubelet_port,
            "socket": str(self.state_dir / SOCKET_NAME),
            "nodes": self.names,
        }
        (self.state_dir / "node.json").write_text(json.dumps(info, indent=2))

    # ------------------------------------------------------------------ nodes
    async def _register(self, name: str) -> None:
        body = node_object(name, self.capacity, self.args.kubelet_port, self.version)
        try:
            node = await self.client.request("POST", "/api/v1/nodes", body=body)
            log.info("registered node %s", name)
        except ApiError as err:
            if err.status != 409:
                raise
            node = await self.client.request(
                "PATCH",
                f"/api/v1/nodes/{q(name)}",
                body={"metadata": {"labels": body["metadata"]["labels"]}},
                content_type=MERGE_PATCH,
            )
            log.info("node %s was registered before; updating it", name)
        self.node_uids[name] = node["metadata"]["uid"]
        await self._post_status(name, ready=True)
        await self._set_not_ready_taint(name, present=False)
        await self._renew_lease(name)

    async def _set_not_ready_taint(self, name: str, *, present: bool) -> None:
        """Add or remove ``node.kubernetes.io/not-ready:NoSchedule``.

        The TaintNodesByCondition admission plugin taints every new Node; the node lifecycle
        controller lifts it once the node is Ready. The dev cluster does not run that controller,
        so the process node does it for its own Nodes (and taints them again when it stops).
        """
        node = await self.client.get(f"/api/v1/nodes/{q(name)}")
        taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != NOT_READY_TAINT["key"]]
        if present:
            taints.append(dict(NOT_READY_TAINT))
        if taints == (node["spec"].get("taints") or []):
            return
        body = {
            "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
            "spec": {"taints": taints},
        }
        await self.client.request("PATCH", f"/api/v1/nodes/{q(name)}", body=body, content_type=MERGE_PATCH)

    async def _post_status(self, name: str, *, ready: bool) -> None:
        status = node_status(
            name, self.capacity, self.args.kubelet_port, self.version, ready=ready, now=time.time()
        )
        await self.client.request(
            "PATCH", f"/api/v1/nodes/{q(name)}/status", body={"status": status}, content_type=STRATEGIC_PATCH
        )

    async def _renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{q(name)}"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(time.time()),
        }
        try:
            await self.client.request("PATCH", path, body={"spec": spec}, content_type=MERGE_PATCH)
        except ApiError as err:
            if err.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.node_uids[name]}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                "spec": spec,
            }
            await self.client.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=lease
            )

    async def _heartbeat(self, name: str) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            try:
                await self._renew_lease(name)
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    await self._post_status(name, ready=True)
                    last_status = time.monotonic()
            except ApiError as err:
                log.warning("heartbeat of node %s failed: %s", name, err)

    # ------------------------------------------------------------------ pods
    async def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._forget(pod["metadata"]["uid"])
        else:
            self._observe(pod)

    def _observe(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.observe(pod)
            return
        worker = PodWorker(self.ctx, pod)
        self.workers[uid] = worker
        self.by_name[(worker.namespace, worker.name)] = uid
        worker.observe(pod)
        self._spawn(worker.run())

    def _forget(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None or worker.gone:
            return
        worker.forget()

        async def cleanup() -> None:
            await worker.done.wait()
            await worker.remove_files()
            self.workers.pop(uid, None)
            if self.by_name.get((worker.namespace, worker.name)) == uid:
                del self.by_name[(worker.namespace, worker.name)]

        self._spawn(cleanup())

    # ------------------------------------------------------------------ shutdown
    async def _shutdown(self, kubelet: KubeletServer, control: ControlServer) -> None:
        active = [w for w in self.workers.values() if not w.done.is_set()]
        log.warning("shutting down: stopping %d pods", len(active))
        for worker in active:
            worker.request_stop("shutdown", SHUTDOWN_GRACE)
        if active:
            await asyncio.wait([asyncio.create_task(w.done.wait()) for w in active], timeout=SHUTDOWN_TIMEOUT)
        for name in self.names:
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                await asyncio.wait_for(self._post_status(name, ready=False), timeout=3)
                await asyncio.wait_for(self._set_not_ready_taint(name, present=True), timeout=3)
        await control.stop()
        await kubelet.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        (self.state_dir / "node.json").unlink(missing_ok=True)
        log.warning("process node stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(ProcessNode(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
