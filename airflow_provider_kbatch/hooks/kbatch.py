"""``KbatchHook`` (sync) and ``AsyncKbatchHook`` (async): the provider's only API-server I/O.

Both use the cncf provider's ``kubernetes`` connection type. Configuration loading (in-cluster,
``kube_config_path``, ``kube_config`` content, context, namespace, SSL and keepalive options) is
the cncf ``KubernetesHook`` / ``AsyncKubernetesHook``'s, used by composition for its API client
only. Everything else is shared and pure: requests and multi-request procedures
(:mod:`~airflow_provider_kbatch.hooks.calls`), error mapping
(:mod:`~airflow_provider_kbatch.errors`), the retry policy
(:mod:`~airflow_provider_kbatch.hooks.retry`) and the resumable watch
(:mod:`~airflow_provider_kbatch.hooks.watch`). The two classes only execute requests.

This module holds ``KbatchHook`` and is the import path of both hooks (the provider info lists
it); ``AsyncKbatchHook`` lives in :mod:`~airflow_provider_kbatch.hooks.async_kbatch`, what both
share (constructor, connection metadata, defaults) in :mod:`~airflow_provider_kbatch.hooks.base`.

Objects go in and out as plain camelCase dicts, exactly the API server's JSON (responses are
read raw, not through the client's models, so no field is dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_kbatch.errors import from_client_exception
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.async_kbatch import AsyncKbatchHook as AsyncKbatchHook
from airflow_provider_kbatch.hooks.base import DEFAULT_RETRY_POLICY as DEFAULT_RETRY_POLICY
from airflow_provider_kbatch.hooks.base import DEFAULT_WATCH_RETRY_POLICY as DEFAULT_WATCH_RETRY_POLICY
from airflow_provider_kbatch.hooks.base import DEFAULT_WATCH_TIMEOUT_SECONDS as DEFAULT_WATCH_TIMEOUT_SECONDS
from airflow_provider_kbatch.hooks.base import LOG_STREAM_TIMEOUT as LOG_STREAM_TIMEOUT
from airflow_provider_kbatch.hooks.base import (
    WATCH_CLIENT_TIMEOUT_SLACK_SECONDS as WATCH_CLIENT_TIMEOUT_SLACK_SECONDS,
)
from airflow_provider_kbatch.hooks.base import Mutate, _HookBase
from airflow_provider_kbatch.hooks.calls import ApiCall, Propagation
from airflow_provider_kbatch.hooks.connection import resolve_namespace
from airflow_provider_kbatch.hooks.retry import RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

T = TypeVar("T")


class KbatchHook(_HookBase):
    """Synchronous Kubernetes Job / Pod / ConfigMap / PVC I/O for kbatch.

    :param conn_id: Airflow connection of type ``kubernetes`` (cncf provider).
    :param namespace: default namespace when a method gets ``namespace=None``; else the
        connection's ``namespace`` extra, else ``default``.
    :param cluster_context: kubeconfig context (overrides the connection's).
    :param config_file: kubeconfig path (overrides the connection's ``kube_config_path``).
    :param in_cluster: use the pod's service account (overrides the connection's).
    :param retry_policy: backoff for transient API errors (429, 5xx, resets, timeouts).
    :param sleep: injected sleep (tests).
    """

    def __init__(
        self,
        conn_id: str = _HookBase.default_conn_name,
        *,
        namespace: str | None = None,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        super().__init__(
            conn_id,
            namespace=namespace,
            cluster_context=cluster_context,
            config_file=config_file,
            in_cluster=in_cluster,
            retry_policy=retry_policy,
        )
        self._sleep = sleep

    # --- plumbing ---------------------------------------------------------------------------------

    @cached_property
    def cncf_hook(self) -> KubernetesHook:
        """The cncf ``KubernetesHook`` that loads the configuration (composition, not inheritance)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(**self._cncf_kwargs())

    @cached_property
    def api_client(self) -> Any:
        """The ``kubernetes.client.ApiClient`` (cached)."""
        return self.cncf_hook.api_client

    def get_conn(self) -> Any:
        return self.api_client

    def get_namespace(self) -> str:
        """The namespace used when a method gets ``namespace=None``."""
        return resolve_namespace(self.namespace, None if self.namespace else self.cncf_hook.get_namespace())

    @cached_property
    def _apis(self) -> dict[str, Any]:
        from kubernetes import client

        return {
            name: getattr(client, name)(self.api_client)
            for name in ("BatchV1Api", "CoreV1Api", "PolicyV1Api", "VersionApi")
        }

    def _send(self, call: ApiCall) -> Any:
        from kubernetes.client.exceptions import ApiException

        method = getattr(self._apis[call.api], call.method)
        try:
            response = method(**call.kwargs, _preload_content=False)
        except ApiException as exc:
            raise from_client_exception(exc) from exc
        try:
            data = response.data
        finally:
            response.release_conn()
        return calls.decode_body(data, call.decode)

    def execute(self, call: ApiCall) -> Any:
        """Execute one request, retrying transient errors; raises :class:`KbatchApiError`."""
        return call_with_retry(lambda: self._send(call), self.retry_policy, self._sleep)

    def _run(self, proc: calls.Proc[T]) -> T:
        return calls.run(proc, self.execute, self._sleep)

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.get_namespace()

    def test_connection(self) -> tuple[bool, str]:
        """Airflow UI "Test connection": read the server version."""
        try:
            major, minor = self.server_version()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to Kubernetes {major}.{minor}"

    # --- cluster ----------------------------------------------------------------------------------

    def server_version(self) -> tuple[int, int]:
        """``(major, minor)`` of the API server."""
        return self._run(calls.server_version())

    # --- Jobs -------------------------------------------------------------------------------------

    def create_job(self, namespace: str | None, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Job. A 409 raises ``JobAlreadyExists`` carrying the existing Job (read back)."""
        return self._run(calls.create_job(self._ns(namespace), manifest))

    def get_job(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._run(calls.get("Job", self._ns(namespace), name))

    def list_jobs(
        self, namespace: str | None, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(
            calls.list_objects(
                "Job", self._ns(namespace), label_selector=label_selector, field_selector=field_selector
            )
        )

    def delete_job(self, namespace: str | None, name: str, propagation: Propagation = "Foreground") -> bool:
        """Delete a Job and (by default, foreground) its pods. False when it was already gone."""
        return self._run(calls.delete("Job", self._ns(namespace), name, propagation=propagation))

    def set_suspend(self, namespace: str | None, name: str, suspend: bool) -> dict[str, Any]:
        """Set ``spec.suspend`` (merge patch); returns the updated Job."""
        return self._run(calls.set_suspend(self._ns(namespace), name, suspend))

    # --- Pods -------------------------------------------------------------------------------------

    def list_pods(
        self, namespace: str | None, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(
            calls.list_objects(
                "Pod", self._ns(namespace), label_selector=label_selector, field_selector=field_selector
            )
        )

    def pod_pages(
        self,
        namespace: str | None,
        label_selector: str | None = None,
        *,
        page_size: int = calls.LIST_PAGE_SIZE,
    ) -> Iterator[list[dict[str, Any]]]:
        """The matching pods one page (``page_size``, ``limit``/``continue``) at a time: a Job of
        100,000 pods is read without holding every pod at once."""
        ns, token = self._ns(namespace), None
        while True:
            items, token = self._run(
                calls.list_page(
                    "Pod", ns, label_selector=label_selector, page_size=page_size, continue_token=token
                )
            )
            yield items
            if not token:
                return

    def read_pod_log(
        self,
        namespace: str | None,
        pod: str,
        container: str | None = None,
        *,
        tail_lines: int | None = None,
        limit_bytes: int | None = None,
        previous: bool = False,
    ) -> str:
        """A pod's log. 404 raises ``NotFound``; 400 (not started yet) raises ``PodLogNotReady``."""
        return self._run(
            calls.read_pod_log(
                self._ns(namespace),
                pod,
                container=container,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                previous=previous,
            )
        )

    def list_events(self, namespace: str | None, field_selector: str | None = None) -> list[dict[str, Any]]:
        """Core events (diagnostics), e.g. ``field_selector="involvedObject.name=<job>"``."""
        return self._run(calls.list_objects("Event", self._ns(namespace), field_selector=field_selector))

    # --- ConfigMaps (run ledger) ------------------------------------------------------------------

    def get_config_map(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._run(calls.get("ConfigMap", self._ns(namespace), name))

    def list_config_maps(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        return self._run(calls.list_objects("ConfigMap", self._ns(namespace), label_selector=label_selector))

    def create_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a ConfigMap (409 raises ``AlreadyExists``)."""
        return self._run(calls.create("ConfigMap", self._ns(namespace), body))

    def replace_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a ConfigMap; ``body.metadata.resourceVersion`` is required (409 raises ``Conflict``)."""
        return self._run(calls.replace_config_map(self._ns(namespace), body))

    def delete_config_map(self, namespace: str | None, name: str) -> bool:
        return self._run(calls.delete("ConfigMap", self._ns(namespace), name))

    def update_config_map_cas(
        self,
        namespace: str | None,
        name: str,
        mutate: Mutate,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        check: Callable[[Mapping[str, Any]], None] | None = None,
        max_attempts: int = 30,
    ) -> dict[str, str]:
        """Compare-and-swap update of a ConfigMap's data with the pure ``mutate``; returns the data
        written. See :func:`airflow_provider_kbatch.hooks.calls.update_config_map_cas`."""
        return self._run(
            calls.update_config_map_cas(
                self._ns(namespace),
                name,
                mutate,
                labels=labels,
                annotations=annotations,
                check=check,
                max_attempts=max_attempts,
            )
        )

    def put_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the ConfigMap, or make the existing one hold ``body``'s data (idempotent). See
        :func:`airflow_provider_kbatch.hooks.calls.put_config_map`."""
        return self._run(calls.put_config_map(self._ns(namespace), body))

    # --- PersistentVolumeClaims (workspace) -------------------------------------------------------

    def create_pvc(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a PersistentVolumeClaim (409 raises ``AlreadyExists``)."""
        return self._run(calls.create("PersistentVolumeClaim", self._ns(namespace), body))

    def get_pvc(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._run(calls.get("PersistentVolumeClaim", self._ns(namespace), name))

    def delete_pvc(self, namespace: str | None, name: str) -> bool:
        return self._run(calls.delete("PersistentVolumeClaim", self._ns(namespace), name))

    # --- PodDisruptionBudgets (disruption_budget=) ------------------------------------------------

    def create_pod_disruption_budget(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a PodDisruptionBudget (409 raises ``AlreadyExists``)."""
        return self._run(calls.create("PodDisruptionBudget", self._ns(namespace), body))

    def get_pod_disruption_budget(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._run(calls.get("PodDisruptionBudget", self._ns(namespace), name))
