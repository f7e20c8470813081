"""``AsyncKbatchHook``: the async twin of :class:`~airflow_provider_kbatch.hooks.kbatch.KbatchHook`
(kubernetes_asyncio), running the same sans-IO procedures, plus the watches and the followed log.
Import it from :mod:`airflow_provider_kbatch.hooks.kbatch`, its public path."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_kbatch.errors import (
    JobDeleted,
    KbatchApiError,
    NotFound,
    PodLogNotReady,
    api_error,
    from_client_exception,
)
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.base import (
    DEFAULT_WATCH_RETRY_POLICY,
    DEFAULT_WATCH_TIMEOUT_SECONDS,
    LOG_STREAM_TIMEOUT,
    WATCH_CLIENT_TIMEOUT_SLACK_SECONDS,
    Mutate,
    _HookBase,
)
from airflow_provider_kbatch.hooks.calls import ApiCall, Propagation
from airflow_provider_kbatch.hooks.client_pool import loop_pool
from airflow_provider_kbatch.hooks.connection import allowed_extras, resolve_namespace
from airflow_provider_kbatch.hooks.retry import RetryPolicy, acall_with_retry
from airflow_provider_kbatch.hooks.shared_watch import (
    Feed,
    by_label,
    by_name,
    hub,
    label_equals,
    label_selector_matcher,
)
from airflow_provider_kbatch.hooks.watch import Keep, resumable_watch
from airflow_provider_kbatch.hooks.watch_streams import watch_opener
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL
from airflow_provider_kbatch.status import watched_pod

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

T = TypeVar("T")


class AsyncKbatchHook(_HookBase):
    """Asynchronous counterpart of :class:`KbatchHook` (kubernetes_asyncio), plus the watches.

    Short requests lease the event loop's client for the cluster (``share_clients``, default True:
    :mod:`airflow_provider_kbatch.hooks.client_pool`, opened through the cncf
    ``AsyncKubernetesHook`` and renewed every 5 minutes, so exec-plugin tokens are refreshed);
    followed logs lease a second one; watches open a client of their own; ``async with hook:``
    keeps one client for the block. Same constructor as :class:`KbatchHook`, plus
    ``watch_retry_policy`` (reconnect backoff of the watches), an injected async ``sleep`` and ``share_watches`` (default True: the
    waits of one event loop on the same cluster and namespace share one Job watch and one pod
    watch, see :mod:`airflow_provider_kbatch.hooks.shared_watch`).
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
        share_watches: bool = True,
        share_clients: bool = True,
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
        self.share_watches = share_watches
        self.share_clients = share_clients
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

    async def _leased(self, *purpose: str) -> AbstractAsyncContextManager[Any]:
        """The loop's shared client of this cluster for ``purpose`` (:mod:`.client_pool`), or a
        client of its own when sharing is off or ``async with hook:`` pinned one."""
        if self._pinned is None and self.share_clients:
            return (await loop_pool()).lease((*self._shared(), *purpose), self._open_client)
        return self._client()

    async def _send(self, call: ApiCall) -> Any:
        async with await self._leased() as api_client:
            response = await self._invoke(api_client, call)
            try:
                data = await response.read()
            finally:
                response.release()
        return calls.decode_body(data, call.decode)

    async def _open_client(self) -> AbstractAsyncContextManager[Any]:
        return (await self.cncf_hook()).get_conn()

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

    async def pod_pages(
        self,
        namespace: str | None,
        label_selector: str | None = None,
        *,
        page_size: int = calls.LIST_PAGE_SIZE,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The matching pods one page at a time (see ``KbatchHook.pod_pages``)."""
        ns, token = await self._ns(namespace), None
        while True:
            items, token = await self._run(
                calls.list_page(
                    "Pod", ns, label_selector=label_selector, page_size=page_size, continue_token=token
                )
            )
            yield items
            if not token:
                return

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

    async def create_pod_disruption_budget(
        self, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._run(calls.create("PodDisruptionBudget", await self._ns(namespace), body))

    async def get_pod_disruption_budget(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await self._run(calls.get("PodDisruptionBudget", await self._ns(namespace), name))

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
        on_listed: Callable[[], object] = lambda: None,
        keep: Keep = dict,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """The resumable watch of ``kind`` objects matching the selectors: ``list_items`` first,
        then watches from its resourceVersion (see :func:`resumable_watch`; ``keep`` too)."""
        server_timeout = timeout_seconds or DEFAULT_WATCH_TIMEOUT_SECONDS
        open_watch = watch_opener(
            self._client,
            self._invoke,
            kind,
            namespace,
            timeout_seconds=server_timeout,
            client_timeout=server_timeout + WATCH_CLIENT_TIMEOUT_SLACK_SECONDS,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return resumable_watch(
            list_items,
            open_watch,
            policy=self.watch_retry_policy,
            sleep=self._sleep,
            on_listed=on_listed,
            keep=keep,
        )

    def _shared(self, *parts: Any) -> tuple[Any, ...]:
        """The key of a shared watch: the cluster this hook talks to, then ``parts``."""
        return (self.conn_id, self.cluster_context, self.config_file, self.in_cluster, *parts)

    def _feed_hook(self) -> AsyncKbatchHook:
        """A copy of this hook for a shared watch: it outlives the subscriber that started it, so
        it never uses the subscriber's pinned client (``async with hook:``)."""
        clone = copy.copy(self)
        if clone._pinned_cm is not None:  # the block's client closes with the block
            clone._pinned = clone._pinned_cm = None
        return clone

    async def watch_job(
        self,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the Job now, then every change, until the consumer stops.

        With ``share_watches`` (the default) every wait on this cluster and namespace in the
        event loop shares one watch of the namespace's Jobs (:mod:`.shared_watch`): the Job is
        taken from it when known, read directly otherwise (a Job created a moment ago the watch
        has not reported yet), then followed. Without, the Job is listed
        (``fieldSelector=metadata.name=<name>``) and watched on its own. Either way the watch
        resumes from its ``resourceVersion`` after each server-side timeout (``timeout_seconds``,
        default 240 s; the client-side timeout is 30 s more), re-lists on 410 and reconnects with
        ``watch_retry_policy`` backoff on transient errors. Raises :class:`JobDeleted` when the
        Job is deleted or missing (or replaced by a Job of the same name with another ``uid``,
        when ``uid`` is given). Wrap in ``asyncio.timeout`` for a deadline.
        """
        ns = await self._ns(namespace)
        last: dict[str, Any] | None = None
        events: AsyncIterator[tuple[str, dict[str, Any]]]
        if self.share_watches:
            feed_hook = self._feed_hook()

            def start(on_listed: Callable[[], None]) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
                async def list_all() -> tuple[list[dict[str, Any]], str]:
                    return await feed_hook._run(calls.list_with_version("Job", ns))

                return feed_hook._resumable(
                    "Job", ns, list_all, timeout_seconds=timeout_seconds, on_listed=on_listed
                )

            def named(job: Mapping[str, Any]) -> bool:
                return (job.get("metadata") or {}).get("name") == name

            async def prime(feed: Feed) -> list[tuple[str, dict[str, Any]]]:
                if any(named(job) for job in feed.known_at(name)):
                    return []
                current = await self.get_job(ns, name)
                if current is None:
                    raise JobDeleted(ns, name, None)
                return [("ADDED", current)]

            events = hub().subscribe(
                self._shared("Job", ns, timeout_seconds), start, named, prime=prime, route=by_name, at=name
            )
        else:
            selector = f"metadata.name={name}"

            async def list_job() -> tuple[list[dict[str, Any]], str]:
                items, resource_version = await self._run(
                    calls.list_with_version("Job", ns, field_selector=selector)
                )
                if not items:
                    raise JobDeleted(ns, name, last)
                return items, resource_version

            events = self._resumable(
                "Job", ns, list_job, timeout_seconds=timeout_seconds, field_selector=selector
            )
        async with aclosing(events) as stream:  # type: ignore[type-var]
            async for event_type, job in stream:
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
        pods that vanished while a re-list was needed are reported ``DELETED``. Shared: a selector
        on a Job's controller uid is served from one watch of the namespace's Job pods."""
        return self._watch_labelled("Pod", namespace, label_selector, timeout_seconds)

    def watch_config_maps(
        self,
        namespace: str | None,
        label_selector: str,
        *,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Yield ``(event type, config map)`` for matching ConfigMaps (run ledgers), like
        :meth:`watch_pods`; waits with the same selector share one watch."""
        return self._watch_labelled("ConfigMap", namespace, label_selector, timeout_seconds)

    async def _watch_labelled(
        self, kind: calls.Kind, namespace: str | None, label_selector: str, timeout_seconds: int | None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        ns = await self._ns(namespace)
        matcher = label_selector_matcher(label_selector) if self.share_watches else None
        # pods of Jobs: one watch of every Job pod in the namespace, filtered here
        watched = (
            CONTROLLER_UID_LABEL
            if kind == "Pod" and matcher is not None and CONTROLLER_UID_LABEL in label_selector
            else label_selector
        )
        feed_hook = self._feed_hook() if matcher is not None else self
        # what is kept of each pod: the watch, its feed and every wait hold all of a Job's pods
        keep: Keep = watched_pod if kind == "Pod" else dict

        def start(on_listed: Callable[[], None]) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
            async def list_items() -> tuple[list[dict[str, Any]], str]:
                return await feed_hook._run(
                    calls.list_with_version(kind, ns, label_selector=watched, keep=keep)
                )

            return feed_hook._resumable(
                kind,
                ns,
                list_items,
                timeout_seconds=timeout_seconds,
                label_selector=watched,
                on_listed=on_listed,
                keep=keep,
            )

        events: AsyncIterator[tuple[str, dict[str, Any]]]
        if matcher is None:
            events = start(lambda: None)
        else:
            # one Job's pods: offered only the pods of its controller uid (a thousand waits share it)
            by_uid = watched == CONTROLLER_UID_LABEL
            events = hub().subscribe(
                self._shared(kind, ns, watched, timeout_seconds),
                start,
                matcher,
                route=by_label(CONTROLLER_UID_LABEL) if by_uid else None,
                at=label_equals(label_selector, CONTROLLER_UID_LABEL) if by_uid else None,
            )
        async with aclosing(events) as stream:  # type: ignore[type-var]
            async for event in stream:
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
        # the followed logs of a loop share a client of their own (its pool of 100 connections;
        # a loop follows at most WaitSettings.process_log_streams, 64, at once): building one per
        # stream (kubeconfig, SSL context) was most of a 1,000-trigger loop's CPU as they ended
        async with await self._leased("log streams") as api_client:
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
