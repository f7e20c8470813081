"""The process node: stands in for the kubelet on a machine without a container runtime.

``python -m airflow_provider_kbatch.devcluster.node --kubeconfig K --state-dir D
--node-name kbatch-node-0 [--node-name ...] --kubelet-port P [--cpu 8 --memory 16Gi --pods 110]
[--simulated-node kbatch-sim-0 ...]``

``--simulated-node`` also registers simulated Nodes (scale mode, ``processnode.simulated``): pods
bound to them end as their ``kbatch.io/simulate`` annotation says, without a process.

Registers each Node (capacity, ``Ready``, InternalIP 127.0.0.1, the kubelet port) and renews its
Lease in ``kube-node-lease`` (``processnode.nodeapi``); watches the pods bound to its nodes and runs every container as a
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
import signal
import sys
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.containers import NodeContext
from airflow_provider_kbatch.devcluster.processnode.host import (
    base_env,
    host_tools,
    micro_time,
    node_object,
    service_env,
)
from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError, Informer, KubeClient
from airflow_provider_kbatch.devcluster.processnode.nodeapi import NodeApi
from airflow_provider_kbatch.devcluster.processnode.pods import PodWorker
from airflow_provider_kbatch.devcluster.processnode.procs import MemoryWatch, sweep_pid_files
from airflow_provider_kbatch.devcluster.processnode.provisioner import Provisioner
from airflow_provider_kbatch.devcluster.processnode.server import (
    SOCKET_NAME,
    ControlServer,
    KubeletServer,
    ensure_serving_cert,
)
from airflow_provider_kbatch.devcluster.processnode.simulated import SimulatedNodes

# Re-exported: the Node object and the container environment lived here before processnode.host.
__all__ = ["ProcessNode", "base_env", "host_tools", "main", "micro_time", "node_object", "service_env"]

log = logging.getLogger("kbatch.node")

WARNING = (
    "kbatch process node: a DEVELOPMENT TOOL, NOT A SANDBOX. Containers run as plain local processes "
    "sharing this machine's filesystem, network and process table. Started as root, it runs them as "
    "the pod's runAsUser/runAsGroup but grants CAP_DAC_READ_SEARCH (they can read every file) so they "
    "can load the project's interpreter. The kubelet endpoint listens on 127.0.0.1 only, "
    "without authentication."
)
SHUTDOWN_GRACE = 5.0
SHUTDOWN_TIMEOUT = 15.0


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
    parser.add_argument(
        "--simulated-node",
        action="append",
        default=[],
        help="also register a simulated node (pods complete without a process: processnode.simulated)",
    )
    parser.add_argument(
        "--simulated-writes", type=int, default=32, help="concurrent pod status writes of the simulated nodes"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


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
        self.nodes: list[NodeApi] = []
        self.simulated_nodes: SimulatedNodes | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ registry (servers)
    def find(self, namespace: str, name: str) -> PodWorker | None:
        uid = self.by_name.get((namespace, name))
        return self.workers.get(uid) if uid else None

    def simulated(self, namespace: str, name: str) -> bool:
        return self.simulated_nodes is not None and (namespace, name) in self.simulated_nodes.names

    async def simulated_ended(self, namespace: str, name: str) -> None:
        """Return once the simulated pod's containers have ended (or it is gone)."""
        sim = self.simulated_nodes.names.get((namespace, name)) if self.simulated_nodes else None
        if sim is not None:
            await sim.ended.wait()

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
        version = str((await self.client.get("/version")).get("gitVersion", "v0.0.0"))
        port = self.args.kubelet_port
        self.nodes = [NodeApi(self.client, name, self.capacity, port, version) for name in self.names]
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
        cert = ensure_serving_cert(self.state_dir / "kubelet", self.names + list(self.args.simulated_node))
        kubelet = KubeletServer(self, self.state_dir / "pods", self.args.kubelet_port, cert)
        control = ControlServer(self, self.state_dir / SOCKET_NAME)
        await kubelet.start()
        await control.start()
        for node in self.nodes:
            await node.register()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self._spawn(self.ctx.memory.run())
        self._spawn(Provisioner(self.client, self.state_dir / "volumes").run())
        for node in self.nodes:
            self._spawn(node.heartbeat())
            informer = Informer(self.client, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node.name}"})
            self._spawn(informer.run(self._pod_event))
        if self.args.simulated_node:
            sim_client = await KubeClient.from_kubeconfig(self.args.kubeconfig)
            self.simulated_nodes = SimulatedNodes(
                sim_client,
                list(dict.fromkeys(self.args.simulated_node)),
                port,
                version,
                writes=self.args.simulated_writes,
            )
            await self.simulated_nodes.register()
            for coro in self.simulated_nodes.informers():
                self._spawn(coro)
            log.info("simulated nodes %s ready", ", ".join(self.args.simulated_node))
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
        for node in self.nodes:
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                await asyncio.wait_for(node.post_status(ready=False), timeout=3)
                await asyncio.wait_for(node.set_not_ready_taint(present=True), timeout=3)
        if self.simulated_nodes is not None:
            await self.simulated_nodes.stop()
            await self.simulated_nodes.client.close()
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
