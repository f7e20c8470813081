"""The API calls one pod's worker makes: what its volumes and environment refer to, its status,
its Events and its final deletion. Raw JSON through ``KubeClient``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.kubeapi import STRATEGIC_PATCH, ApiError, KubeClient, q
from airflow_provider_kbatch.devcluster.processnode.podenv import ObjectSource, referenced_objects
from airflow_provider_kbatch.devcluster.processnode.podstatus import rfc3339
from airflow_provider_kbatch.devcluster.processnode.volumes import VolumeError, claim_name, token_requests

log = logging.getLogger(__name__)


class PodGone(Exception):
    """The pod was deleted, or replaced by another of the same name."""


class PodApi:
    def __init__(self, client: KubeClient, pod: dict[str, Any]) -> None:
        self.client = client
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.node = pod["spec"].get("nodeName", "")
        self._events_sent: set[tuple[str, str]] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def fetch_objects(self, pod: dict[str, Any], objects: ObjectSource) -> None:
        """ConfigMaps and Secrets the pod refers to (``None`` for missing ones)."""
        config_maps, secrets = referenced_objects(pod)
        ns = q(self.namespace)
        for name in config_maps:
            path = f"/api/v1/namespaces/{ns}/configmaps/{q(name)}"
            objects.config_maps[name] = await self.client.get_or_none(path)
        for name in secrets:
            path = f"/api/v1/namespaces/{ns}/secrets/{q(name)}"
            objects.secrets[name] = await self.client.get_or_none(path)

    async def claim_paths(self, pod: dict[str, Any]) -> dict[str, str]:
        """Host directory of each bound claim the pod uses; ``VolumeError`` while one is not bound."""
        out: dict[str, str] = {}
        for volume in pod["spec"].get("volumes") or []:
            claim = claim_name(pod, volume)
            if claim is None:
                continue
            pvc = await self.client.get_or_none(
                f"/api/v1/namespaces/{q(self.namespace)}/persistentvolumeclaims/{q(claim)}"
            )
            if pvc is None:
                raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
            if (pvc.get("status") or {}).get("phase") != "Bound":
                raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound yet')
            pv = await self.client.get(f"/api/v1/persistentvolumes/{q(pvc['spec']['volumeName'])}")
            path = (pv["spec"].get("hostPath") or pv["spec"].get("local") or {}).get("path")
            if not path:
                raise VolumeError(f"volume {pv['metadata']['name']} has no hostPath or local path")
            out[claim] = str(path)
        return out

    async def tokens(self, pod: dict[str, Any]) -> dict[tuple[str, int], str]:
        """Service-account tokens for the projected volumes (``TokenRequest`` bound to the pod)."""
        out = {}
        account = pod["spec"].get("serviceAccountName") or "default"
        for audience, seconds in token_requests(pod, ""):
            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [audience] if audience else [],
                    "expirationSeconds": seconds,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                },
            }
            path = f"/api/v1/namespaces/{q(self.namespace)}/serviceaccounts/{q(account)}/token"
            response = await self.client.request("POST", path, body=body)
            out[(audience, seconds)] = response["status"]["token"]
        return out

    def event(self, reason: str, message: str, kind: str = "Warning") -> None:
        """Record an Event on the pod (once per reason and message), as the kubelet does for
        problems; the happy path sends none, to keep the API server's load down."""
        if (reason, message) in self._events_sent:
            return
        self._events_sent.add((reason, message))
        now = rfc3339(time.time())
        node = self.node
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        task = asyncio.create_task(self._post_event(body))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post_event(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):
            await self.client.request("POST", f"/api/v1/namespaces/{q(self.namespace)}/events", body=body)

    async def patch_status(self, status: dict[str, Any]) -> bool:
        """Strategic-merge ``status`` into ``pods/status`` with the uid as precondition.

        True when applied; False when the server refused it for good (logged); ``PodGone`` when
        the pod is deleted or was replaced; transient errors are raised for the caller to retry.
        """
        path = f"/api/v1/namespaces/{q(self.namespace)}/pods/{q(self.name)}/status"
        body = {"metadata": {"uid": self.uid}, "status": status}
        for _ in range(3):
            try:
                await self.client.request("PATCH", path, body=body, content_type=STRATEGIC_PATCH)
                return True
            except ApiError as err:
                if err.status == 404:
                    raise PodGone(self.name) from err
                if err.status == 409:  # a uid precondition failed, or a conflict: try again
                    continue
                if err.status in (400, 403, 422):
                    log.error("pod %s/%s: status update rejected: %s", self.namespace, self.name, err)
                    return False
                raise
        raise PodGone(self.name)

    async def delete_now(self) -> None:
        """Delete with grace 0 (what the kubelet does once a deleted pod is terminal)."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        try:
            await self.client.request(
                "DELETE", f"/api/v1/namespaces/{q(self.namespace)}/pods/{q(self.name)}", body=body
            )
        except ApiError as err:
            if err.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.name, err)
