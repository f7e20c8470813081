"""What every dev cluster has once its API server is up: the default StorageClass, served by the
process node's provisioner, and the priority classes ``kbatch-low`` (100) and ``kbatch-high``
(1000). Created through the ``kubernetes`` client; an object that exists already is kept."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from airflow_provider_kbatch.devcluster.processnode.provisioner import PROVISIONER

STORAGE_CLASS = "kbatch-local"
PRIORITY_CLASSES = (("kbatch-low", 100), ("kbatch-high", 1000))


def bootstrap(kubeconfig: Path) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        storage = client.StorageV1Api(api)
        body = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        _create_ignoring_conflict(lambda: storage.create_storage_class(body))
        scheduling = client.SchedulingV1Api(api)
        for name, value in PRIORITY_CLASSES:
            pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                  "metadata": {"name": name}, "value": value}  # fmt: skip
            _create_ignoring_conflict(partial(scheduling.create_priority_class, pc))
    finally:
        api.close()


def _create_ignoring_conflict(create: Callable[[], object]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as err:
        if err.status != 409:
            raise
