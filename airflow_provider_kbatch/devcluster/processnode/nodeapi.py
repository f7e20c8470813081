"""The API calls of the process node's Nodes: registration, status, the not-ready taint and
the Lease in ``kube-node-lease`` that the node lifecycle controller reads as the heartbeat.
Raw JSON through ``KubeClient``."""

from __future__ import annotations

import asyncio
import logging
import time

from airflow_provider_kbatch.devcluster.processnode.host import micro_time, node_object, node_status
from airflow_provider_kbatch.devcluster.processnode.kubeapi import (
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ApiError,
    KubeClient,
    q,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
STATUS_SECONDS = 30
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


class NodeApi:
    """One Node of the process node, as the kubelet keeps it: ``capacity`` (also allocatable),
    the kubelet ``port`` and the ``version`` it reports."""

    def __init__(
        self,
        client: KubeClient,
        name: str,
        capacity: dict[str, str],
        port: int,
        version: str,
        *,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> None:
        self.client = client
        self.labels = dict(labels or {})
        self.taints = [dict(t) for t in taints or ()]  # kept on the Node (e.g. the simulated taint)
        self.name = name
        self.capacity = capacity
        self.port = port
        self.version = version
        self.path = f"/api/v1/nodes/{q(name)}"
        self.uid = ""

    async def register(self) -> None:
        """Create the Node (or update the labels of an existing one), report it Ready, lift the
        not-ready taint and take its Lease."""
        body = node_object(self.name, self.capacity, self.port, self.version, labels=self.labels)
        try:
            node = await self.client.request("POST", "/api/v1/nodes", body=body)
            log.info("registered node %s", self.name)
        except ApiError as err:
            if err.status != 409:
                raise
            labels = {"metadata": {"labels": body["metadata"]["labels"]}}
            node = await self.client.request("PATCH", self.path, body=labels, content_type=MERGE_PATCH)
            log.info("node %s was registered before; updating it", self.name)
        self.uid = node["metadata"]["uid"]
        await self.post_status(ready=True)
        await self.set_not_ready_taint(present=False)
        await self.renew_lease()

    async def set_not_ready_taint(self, *, present: bool) -> None:
        """Add or remove ``node.kubernetes.io/not-ready:NoSchedule``.

        The TaintNodesByCondition admission plugin taints every new Node; the node lifecycle
        controller lifts it once the node is Ready. The dev cluster does not run that controller,
        so the process node does it for its own Nodes (and taints them again when it stops).
        """
        node = await self.client.get(self.path)
        taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != NOT_READY_TAINT["key"]]
        taints += [t for t in self.taints if t not in taints]
        if present:
            taints.append(dict(NOT_READY_TAINT))
        if taints == (node["spec"].get("taints") or []):
            return
        body = {
            "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
            "spec": {"taints": taints},
        }
        await self.client.request("PATCH", self.path, body=body, content_type=MERGE_PATCH)

    async def post_status(self, *, ready: bool) -> None:
        status = node_status(self.name, self.capacity, self.port, self.version, ready=ready, now=time.time())
        await self.client.request(
            "PATCH", f"{self.path}/status", body={"status": status}, content_type=STRATEGIC_PATCH
        )

    async def renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(time.time()),
        }
        try:
            await self.client.request(
                "PATCH", f"{LEASES}/{q(self.name)}", body={"spec": spec}, content_type=MERGE_PATCH
            )
        except ApiError as err:
            if err.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                "spec": spec,
            }
            await self.client.request("POST", LEASES, body=lease)

    async def heartbeat(self) -> None:
        """Renew the Lease every ``LEASE_RENEW_SECONDS`` and post the status every ``STATUS_SECONDS``."""
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            try:
                await self.renew_lease()
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    await self.post_status(ready=True)
                    last_status = time.monotonic()
            except ApiError as err:
                log.warning("heartbeat of node %s failed: %s", self.name, err)
