"""The ``kbatch.io/process-node`` volume provisioner (an external provisioner, as the PV
controller expects one).

A Pending claim of a StorageClass with this provisioner gets a PersistentVolume ``pvc-<claim uid>``
whose ``hostPath`` is ``<state dir>/volumes/pvc-<claim uid>`` (mode 0777, like the hostpath
provisioner) and whose ``claimRef`` names the claim; the persistentvolume-binder controller then
binds the two. A Released volume with reclaim policy ``Delete`` that this provisioner made has its
directory removed and is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError, Informer, KubeClient

log = logging.getLogger(__name__)

PROVISIONER = "kbatch.io/process-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_for_claim(claim: dict[str, Any], storage_class: dict[str, Any], root: Path) -> dict[str, Any]:
    """The PersistentVolume that satisfies ``claim`` (pure)."""
    meta = claim["metadata"]
    spec = claim["spec"]
    name = f"pvc-{meta['uid']}"
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {"kbatch.io/claim-namespace": meta["namespace"]},
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def wants_volume(claim: dict[str, Any]) -> bool:
    return (
        (claim.get("status") or {}).get("phase", "Pending") == "Pending"
        and not claim["spec"].get("volumeName")
        and not claim["metadata"].get("deletionTimestamp")
        and bool(claim["spec"].get("storageClassName"))
    )


class Provisioner:
    def __init__(self, client: KubeClient, root: Path) -> None:
        self.client = client
        self.root = root
        self._classes: dict[str, dict[str, Any] | None] = {}
        self._done: set[str] = set()

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        claims = Informer(self.client, "/api/v1/persistentvolumeclaims")
        volumes = Informer(self.client, "/api/v1/persistentvolumes")
        await asyncio.gather(
            claims.run(self._claim_event),
            volumes.run(self._volume_event),
        )

    async def _storage_class(self, name: str) -> dict[str, Any] | None:
        if name not in self._classes:
            sc = await self.client.get_or_none(f"/apis/storage.k8s.io/v1/storageclasses/{name}")
            if sc is None:
                return None  # not cached: the class may be created later
            self._classes[name] = sc
        return self._classes[name]

    async def _claim_event(self, kind: str, claim: dict[str, Any]) -> None:
        if kind == "DELETED" or not wants_volume(claim) or claim["metadata"]["uid"] in self._done:
            return
        sc = await self._storage_class(claim["spec"]["storageClassName"])
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return
        pv = volume_for_claim(claim, sc, self.root)
        directory = Path(pv["spec"]["hostPath"]["path"])
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
        try:
            await self.client.request("POST", "/api/v1/persistentvolumes", body=pv)
            log.info(
                "provisioned %s for claim %s/%s at %s",
                pv["metadata"]["name"],
                claim["metadata"]["namespace"],
                claim["metadata"]["name"],
                directory,
            )
        except ApiError as err:
            if err.status != 409:
                log.error("cannot provision a volume for %s: %s", claim["metadata"]["name"], err)
                return
        self._done.add(claim["metadata"]["uid"])

    async def _volume_event(self, kind: str, pv: dict[str, Any]) -> None:
        ours = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
        if kind == "DELETED" or not ours:
            return
        released = (pv.get("status") or {}).get("phase") == "Released"
        if not released or pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path((pv["spec"].get("hostPath") or {}).get("path", ""))
        if path.parent == self.root and path.name == pv["metadata"]["name"]:
            shutil.rmtree(path, ignore_errors=True)
        try:
            await self.client.request("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
            log.info("deleted released volume %s", pv["metadata"]["name"])
        except ApiError as err:
            if err.status != 404:
                log.error("cannot delete volume %s: %s", pv["metadata"]["name"], err)
