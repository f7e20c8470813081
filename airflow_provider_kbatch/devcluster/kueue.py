"""A real Kueue for the development cluster (``devcluster up --kueue``).

Kueue's controller manager (``sigs.k8s.io/kueue/cmd/kueue``, built from the Go module proxy by
:mod:`.tools`) runs as one more local process against the cluster's API server. Its objects come
from the same module release, read from the Go module cache (``go mod download -json`` names the
directory), never copied into this repository:

* the CRDs of ``config/components/crd/bases``, with the conversion webhooks its kustomization
  patches in (``patches/webhook_in_*.yaml``);
* the webhook configurations of ``config/components/webhook/manifests.yaml``, kept to the
  webhooks of Kueue's own kinds and of ``batch/v1`` Jobs (the only integration enabled here).

There are no Services here (every component is a process on 127.0.0.1), so every webhook's
``clientConfig`` is a ``url`` on the loopback port Kueue's webhook server listens on, and its
``caBundle`` is that server's self-signed certificate (:func:`.pki.ensure_self_signed`); Kueue's
internal certificate management is off. The manager reads the metrics certificate from a path
it hard-codes (``/etc/kueue/metrics/certs``) even with metrics disabled, so that one is written
there once (root is needed, as for the process node's mounts).

The configuration: Job integration only, ``manageJobsWithoutQueueName: false`` (a Job without the
``kueue.x-k8s.io/queue-name`` label is not Kueue's), no leader election, metrics and the
visibility API server off, health probes on a loopback port (``/readyz`` turns ready once the
webhook server accepts TLS connections).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.build import _go
from airflow_provider_kbatch.devcluster.pki import ensure_self_signed
from airflow_provider_kbatch.devcluster.tools import TOOLS

MODULE = "sigs.k8s.io/kueue"
NAMESPACE = "kueue-system"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: where the manager looks for its metrics certificate when internal cert management is off
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
#: webhook rules of these API groups are installed (Kueue's kinds, batch/v1 Jobs)
WEBHOOK_GROUPS = frozenset({"kueue.x-k8s.io", "batch"})
MUTATING = "kueue-mutating-webhook-configuration"
VALIDATING = "kueue-validating-webhook-configuration"
PORTS = ("kueue-webhook", "kueue-health")


@lru_cache(maxsize=1)
def module_dir(version: str | None = None) -> Path:
    """The extracted ``sigs.k8s.io/kueue`` module of the tool's version in the Go module cache
    (downloaded from the module proxy when missing, which building the tool already did)."""
    version = version or TOOLS["kueue"].version
    with tempfile.TemporaryDirectory() as cwd:  # outside any module: GOFLAGS=-mod=... is moot
        result = subprocess.run(
            [_go(), "mod", "download", "-json", f"{MODULE}@{version}"],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=dict(os.environ, GOFLAGS=""),
        )
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed:\n{result.stdout}{result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _url_client_config(base_url: str, path: str, ca_bundle: bytes) -> dict[str, Any]:
    return {"url": base_url + path, "caBundle": base64.b64encode(ca_bundle).decode()}


def crds(module: Path, base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Kueue's CRDs; the ones its kustomization gives a conversion webhook get it, by URL."""
    crd_dir = module / "config" / "components" / "crd"
    kustomization = _yaml_documents(crd_dir / "kustomization.yaml")[0]
    converted = {
        doc["metadata"]["name"]
        for patch in kustomization.get("patches") or ()
        if str(patch.get("path", "")).startswith("patches/webhook_in_")
        for doc in _yaml_documents(crd_dir / patch["path"])
    }
    found = []
    for path in sorted((crd_dir / "bases").glob("*.yaml")):
        for crd in _yaml_documents(path):
            if crd["metadata"]["name"] in converted:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": _url_client_config(base_url, "/convert", ca_bundle),
                        "conversionReviewVersions": ["v1"],
                    },
                }
            found.append(crd)
    return found


def webhook_configurations(module: Path, base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The mutating and validating webhook configurations, for Kueue's kinds and Jobs only (a
    webhook of a disabled integration would reject its kind), each calling ``base_url``."""
    names = {"MutatingWebhookConfiguration": MUTATING, "ValidatingWebhookConfiguration": VALIDATING}
    manifests = module / "config" / "components" / "webhook" / "manifests.yaml"
    configurations = []
    for doc in _yaml_documents(manifests):
        kept = []
        for webhook in doc["webhooks"]:
            groups = {group for rule in webhook.get("rules", ()) for group in rule.get("apiGroups", ())}
            if not groups or not groups <= WEBHOOK_GROUPS:
                continue
            webhook = copy.deepcopy(webhook)
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = _url_client_config(base_url, path, ca_bundle)
            kept.append(webhook)
        doc["metadata"] = {"name": names[doc["kind"]]}
        doc["webhooks"] = kept
        configurations.append(doc)
    return configurations


def configuration(*, webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """The manager's ``Configuration`` (config.kueue.x-k8s.io/v1beta2)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
        "clientConnection": {"qps": 50, "burst": 100},
    }


def prepare(directory: Path, *, webhook_port: int, health_port: int) -> Path:
    """Write the webhook serving certificate, the metrics certificate Kueue insists on and the
    configuration file; the configuration's path."""
    cert_dir = directory / "webhook-certs"
    ensure_self_signed(
        cert_dir / "tls.crt", cert_dir / "tls.key", "kueue-webhook", ("127.0.0.1", "localhost")
    )
    try:
        ensure_self_signed(
            METRICS_CERT_DIR / "tls.crt", METRICS_CERT_DIR / "tls.key", "kueue-metrics", ("127.0.0.1",)
        )
    except PermissionError as err:
        raise RuntimeError(
            f"Kueue reads a metrics certificate from {METRICS_CERT_DIR} (a path it hard-codes): "
            f"run as root, or create tls.crt and tls.key there ({err})"
        ) from None
    path = directory / "config.yaml"
    text = json.dumps(configuration(webhook_port=webhook_port, health_port=health_port, cert_dir=cert_dir))
    path.write_text(text)  # JSON is YAML
    return path


def ready(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def install_crds(kubeconfig: Path, objects: Iterable[dict[str, Any]]) -> None:
    """Create (or update) the CRDs and the ``kueue-system`` namespace."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        extensions = client.ApiextensionsV1Api(api)
        for crd in objects:
            _apply(
                partial(extensions.create_custom_resource_definition, crd),
                partial(extensions.patch_custom_resource_definition, crd["metadata"]["name"], crd),
            )
        core = client.CoreV1Api(api)
        namespace = {"metadata": {"name": NAMESPACE}}
        _apply(partial(core.create_namespace, namespace), partial(core.read_namespace, NAMESPACE))
    finally:
        api.close()


def crds_established(kubeconfig: Path, names: Iterable[str]) -> bool:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        extensions = client.ApiextensionsV1Api(api)
        for name in names:
            crd = extensions.read_custom_resource_definition(name)
            if not any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or ()):
                return False
        return True
    finally:
        api.close()


def install_webhooks(kubeconfig: Path, objects: Iterable[dict[str, Any]]) -> None:
    """Create (or point at the current port) the webhook configurations."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        admission = client.AdmissionregistrationV1Api(api)
        for doc in objects:
            name = doc["metadata"]["name"]
            if doc["kind"] == "MutatingWebhookConfiguration":
                create = partial(admission.create_mutating_webhook_configuration, doc)
                update = partial(admission.patch_mutating_webhook_configuration, name, doc)
            else:
                create = partial(admission.create_validating_webhook_configuration, doc)
                update = partial(admission.patch_validating_webhook_configuration, name, doc)
            _apply(create, update)
    finally:
        api.close()


def _apply(create: Callable[[], object], update: Callable[[], object]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as err:
        if err.status != 409:
            raise
        update()
