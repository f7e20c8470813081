"""``KbatchHook`` (sync) and ``AsyncKbatchHook`` (async): the provider's only API-server I/O.

Both use the cncf provider's ``kubernetes`` connection type. Configuration loading (in-cluster,
``kube_config_path``, ``kube_config`` content, context, namespace, SSL and keepalive options) is
the cncf ``KubernetesHook`` / ``AsyncKubernetesHook``'s, used by composition for its API client
only. Everything else is shared and pure: requests and multi-request procedures
(:mod:`~airflow_provider_kbatch.hooks.calls`), error mapping
(:mod:`~airflow_provider_kbatch.errors`), the retry policy
(:mod:`~airflow_provider_kbatch.hooks.retry`) and the resumable watch
(:mod:`~airflow_provider_kbatch.hooks.watch`). The two classes only execute requests.

Objects go in and out as plain camelCase dicts, exactly the API server's JSON (responses are
read raw, not through the client's models, so no field is dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_kbatch.errors import (
    JobDeleted,
    KbatchApiError,
    NotFound,
    PodLogNotReady,
    api_error,
    from_client_exception,
)
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.calls import ApiCall, Propagation
from airflow_provider_kbatch.hooks.connection import allowed_extras, resolve_namespace
from airflow_provider_kbatch.hooks.retry import RetryPolicy, acall_with_retry, call_with_retry
from airflow_provider_kbatch.hooks.watch import resumable_watch

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

T = TypeVar("T")
Mutate = Callable[[dict[str, str]], dict[str, str]]

DEFAULT_RETRY_POLICY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=30.0)
# Watches live long: reconnect patiently (about 3.5 minutes of consecutive failures).
DEFAULT_WATCH_RETRY_POLICY = RetryPolicy(max_attempts=12, base_delay=1.0, max_delay=30.0)
DEFAULT_WATCH_TIMEOUT_SECONDS = 240
# Client-side timeout of a watch request = server-side timeout + this slack.
WATCH_CLIENT_TIMEOUT_SLACK_SECONDS = 30
# A followed log has no end of its own: bound the connect only (connect, read).
LOG_STREAM_TIMEOUT = (30, None)


class _HookBase(BaseHook):
    """Connection metadata and constructor shared by both hooks (stores arguments only, no I/O)."""

    conn_name_attr = "conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Kubernetes (kbatch)"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.namespace = namespace
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.in_cluster = in_cluster
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY

    def _cncf_kwargs(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "cluster_context": self.cluster_context,
            "config_file": self.config_file,
            "in_cluster": self.in_cluster,
        }


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
            name: getattr(client, name)(self.api_client) for name in ("BatchV1Api", "CoreV1Api", "VersionApi")
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


class AsyncKbatchHook(_HookBase):
    """Asynchronous counterpart of :class:`KbatchHook` (kubernetes_asyncio), plus the watches.

    Each request opens an API client through the cncf ``AsyncKubernetesHook`` (so exec-plugin
    tokens are refreshed) unless the hook is used as ``async with hook:``, which keeps one client
    for the block. Same constructor as :class:`KbatchHook`, plus ``watch_retry_policy`` (reconnect
    backoff of the watches) and an injected async ``sleep``.
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
        watch_retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            conn_id,
            namespace=namespace,
            cluster_context=cluster_context,
            config_file=config_file,
            in_cluster=in_cluster,
            retry_policy=retry_policy,
        )
        self.watch_retry_policy = watch_retry_policy or DEFAULT_WATCH_RETRY_POLICY
        self._sleep = sleep
        self._cncf: AsyncKubernetesHook | None = None
        self._extras: dict[str, Any] | None = None
        self._pinned: Any = None
        self._pinned_cm: AbstractAsyncContextManager[Any] | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    async def cncf_hook(self) -> AsyncKubernetesHook:
        """The cncf ``AsyncKubernetesHook`` that loads the configuration, fed only allow-listed extras."""
        if self._cncf is None:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

            raw = await AsyncKubernetesHook(conn_id=self.conn_id).get_conn_extras()
            # The cncf async hook ignores its config_file argument: pass it as kube_config_path.
            self._extras = allowed_extras(raw, config_file=self.config_file)
            self._cncf = AsyncKubernetesHook(connection_extras=self._extras, **self._cncf_kwargs())
        return self._cncf

    async def get_namespace(self) -> str:
        """The namespace used when a method gets ``namespace=None``."""
        if self.namespace:
            return self.namespace
        await self.cncf_hook()
        return resolve_namespace(None, (self._extras or {}).get("namespace"))

    async def _ns(self, namespace: str | None) -> str:
        return namespace or await self.get_namespace()

    async def __aenter__(self) -> AsyncKbatchHook:
        cm = (await self.cncf_hook()).get_conn()
        self._pinned = await cm.__aenter__()
        self._pinned_cm = cm
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        cm, self._pinned, self._pinned_cm = self._pinned_cm, None, None
        if cm is not None:
            await cm.__aexit__(*exc_info)

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        if self._pinned is not None:
            yield self._pinned
            return
        async with (await self.cncf_hook()).get_conn() as api_client:
            yield api_client

    async def _invoke(self, api_client: Any, call: ApiCall, **options: Any) -> Any:
        """Send one request; returns the open aiohttp response (2xx) or raises KbatchApiError."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        method = getattr(getattr(client, call.api)(api_client), call.method)
        try:
            response = await method(**call.kwargs, _preload_content=False, **options)
        except ApiException as exc:
            raise from_client_exception(exc) from exc
        if not 200 <= response.status < 300:
            try:
                body = await response.read()
            finally:
                response.release()
            raise api_error(response.status, response.reason, body, response.headers)
        return response

    async def _send(self, call: ApiCall) -> Any:
        async with self._client() as api_client:
            response = await self._invoke(api_client, call)
            try:
                data = await response.read()
            finally:
                response.release()
        return calls.decode_body(data, call.decode)

    async def execute(self, call: ApiCall) -> Any:
        """Execute one request, retrying transient errors; raises :class:`KbatchApiError`."""
        return await acall_with_retry(lambda: self._send(call), self.retry_policy, self._sleep)

    async def _run(self, proc: calls.Proc[T]) -> T:
        return await calls.arun(proc, self.execute, self._sleep)

    # --- reads and writes (the same procedures as KbatchHook) -------------------------------------

    async def server_version(self) -> tuple[int, int]:
        return await self._run(calls.server_version())

    async def create_job(self, namespace: str | None, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return await self._run(calls.create_job(await self._ns(namespace), manifest))

    async def get_job(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await self._run(calls.get("Job", await self._ns(namespace), name))

    async def list_jobs(
        self, namespace: str | None, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        ns = await self._ns(namespace)
        return await self._run(
            calls.list_objects("Job", ns, label_selector=label_selector, field_selector=field_selector)
        )

    async def delete_job(
        self, namespace: str | None, name: str, propagation: Propagation = "Foreground"
    ) -> bool:
        return await self._run(calls.delete("Job", await self._ns(namespace), name, propagation=propagation))

    async def set_suspend(self, namespace: str | None, name: str, suspend: bool) -> dict[str, Any]:
        return await self._run(calls.set_suspend(await self._ns(namespace), name, suspend))

    async def list_pods(
        self, namespace: str | None, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        ns = await self._ns(namespace)
        return await self._run(
            calls.list_objects("Pod", ns, label_selector=label_selector, field_selector=field_selector)
        )

    async def read_pod_log(
        self,
        namespace: str | None,
        pod: str,
        container: str | None = None,
        *,
        tail_lines: int | None = None,
        limit_bytes: int | None = None,
        previous: bool = False,
    ) -> str:
        ns = await self._ns(namespace)
        return await self._run(
            calls.read_pod_log(
                ns,
                pod,
                container=container,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                previous=previous,
            )
        )

    async def list_events(
        self, namespace: str | None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(
            calls.list_objects("Event", await self._ns(namespace), field_selector=field_selector)
        )

    async def get_config_map(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await self._run(calls.get("ConfigMap", await self._ns(namespace), name))

    async def list_config_maps(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        return await self._run(
            calls.list_objects("ConfigMap", await self._ns(namespace), label_selector=label_selector)
        )

    async def create_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._run(calls.create("ConfigMap", await self._ns(namespace), body))

    async def replace_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._run(calls.replace_config_map(await self._ns(namespace), body))

    async def delete_config_map(self, namespace: str | None, name: str) -> bool:
        return await self._run(calls.delete("ConfigMap", await self._ns(namespace), name))

    async def update_config_map_cas(
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
        ns = await self._ns(namespace)
        return await self._run(
            calls.update_config_map_cas(
                ns,
                name,
                mutate,
                labels=labels,
                annotations=annotations,
                check=check,
                max_attempts=max_attempts,
            )
        )

    async def put_config_map(self, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._run(calls.put_config_map(await self._ns(namespace), body))

    # --- watches and streams ----------------------------------------------------------------------

    def _resumable(
        self,
        kind: calls.Kind,
        namespace: str,
        list_items: Callable[[], Awaitable[tuple[list[dict[str, Any]], str]]],
        *,
        timeout_seconds: int | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """The resumable watch of ``kind`` objects matching the selectors: ``list_items`` first,
        then watches from its resourceVersion (see :func:`resumable_watch`)."""
        server_timeout = timeout_seconds or DEFAULT_WATCH_TIMEOUT_SECONDS

        @asynccontextmanager
        async def open_watch(resource_version: str) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
            call = calls.watch_call(
                kind,
                namespace,
                resource_version,
                timeout_seconds=server_timeout,
                label_selector=label_selector,
                field_selector=field_selector,
            )
            async with self._client() as api_client:
                response = await self._invoke(
                    api_client, call, _request_timeout=server_timeout + WATCH_CLIENT_TIMEOUT_SLACK_SECONDS
                )
                try:
                    yield _watch_events(response)
                finally:
                    response.close()

        return resumable_watch(list_items, open_watch, policy=self.watch_retry_policy, sleep=self._sleep)

    async def watch_job(
        self,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the Job now, then every change, until the consumer stops.

        Lists the Job (``fieldSelector=metadata.name=<name>``), yields it, then watches from the
        list's ``resourceVersion`` with bookmarks; resumes after each server-side timeout
        (``timeout_seconds``, default 240 s; the client-side timeout is 30 s more), re-lists on 410,
        reconnects with ``watch_retry_policy`` backoff on transient errors. Raises
        :class:`JobDeleted` when the Job is deleted or missing (or replaced by a Job of the same
        name with another ``uid``, when ``uid`` is given). Wrap in ``asyncio.timeout`` for a
        deadline.
        """
        ns = await self._ns(namespace)
        selector = f"metadata.name={name}"
        last: dict[str, Any] | None = None

        async def list_job() -> tuple[list[dict[str, Any]], str]:
            items, resource_version = await self._run(
                calls.list_with_version("Job", ns, field_selector=selector)
            )
            if not items:
                raise JobDeleted(ns, name, last)
            return items, resource_version

        watch = self._resumable("Job", ns, list_job, timeout_seconds=timeout_seconds, field_selector=selector)
        async with aclosing(watch) as events:
            async for event_type, job in events:
                job_uid = (job.get("metadata") or {}).get("uid")
                if event_type == "DELETED" or (uid is not None and job_uid != uid):
                    raise JobDeleted(ns, name, last or job)
                last = job
                yield job

    def watch_pods(
        self,
        namespace: str | None,
        label_selector: str,
        *,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Yield ``(event type, pod)`` for matching pods: first ``ADDED`` for each current pod, then
        ``ADDED`` / ``MODIFIED`` / ``DELETED`` as they change. Same resume rules as :meth:`watch_job`;
        pods that vanished while a re-list was needed are reported ``DELETED``."""
        return self._watch_labelled("Pod", namespace, label_selector, timeout_seconds)

    def watch_config_maps(
        self,
        namespace: str | None,
        label_selector: str,
        *,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Yield ``(event type, config map)`` for matching ConfigMaps (run ledgers), like
        :meth:`watch_pods`."""
        return self._watch_labelled("ConfigMap", namespace, label_selector, timeout_seconds)

    async def _watch_labelled(
        self, kind: calls.Kind, namespace: str | None, label_selector: str, timeout_seconds: int | None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        ns = await self._ns(namespace)

        async def list_items() -> tuple[list[dict[str, Any]], str]:
            return await self._run(calls.list_with_version(kind, ns, label_selector=label_selector))

        watch = self._resumable(
            kind, ns, list_items, timeout_seconds=timeout_seconds, label_selector=label_selector
        )
        async with aclosing(watch) as events:
            async for event in events:
                yield event

    async def stream_pod_log(
        self,
        namespace: str | None,
        pod: str,
        container: str | None = None,
        *,
        since_seconds: int | None = None,
    ) -> AsyncIterator[str]:
        """Yield the pod's log lines as they are written (``follow=True``) until the container ends.

        Returns quietly when the pod does not exist (404); raises :class:`PodLogNotReady` when its
        container has not started yet (400): try again later. A connection broken mid-stream
        raises; reopen with ``since_seconds`` to continue.
        """
        ns = await self._ns(namespace)
        call = calls.pod_log_call(ns, pod, container=container, since_seconds=since_seconds, follow=True)
        async with self._client() as api_client:
            try:
                response = await acall_with_retry(
                    lambda: self._invoke(api_client, call, _request_timeout=LOG_STREAM_TIMEOUT),
                    self.retry_policy,
                    self._sleep,
                )
            except NotFound:
                return
            except KbatchApiError as exc:
                if exc.status == 400:
                    raise PodLogNotReady(exc.status, exc.reason, exc.message, exc.causes) from exc
                raise
            try:
                async for line in calls.iter_lines(response.content.iter_any()):
                    yield line
            finally:
                response.close()


async def _watch_events(response: Any) -> AsyncIterator[Mapping[str, Any]]:
    """Watch events of an open watch response, one JSON object per line (no line length limit).

    A trailing fragment without its newline (a connection cut mid-event) is dropped: the watch
    resumes from the last complete event's resourceVersion.
    """
    splitter = calls.LineSplitter()
    async for chunk in response.content.iter_any():
        for line in splitter.feed(chunk):
            event = calls.parse_watch_line(line)
            if event is not None:
                yield event
