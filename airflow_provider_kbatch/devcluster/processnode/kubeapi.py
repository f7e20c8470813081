"""A small asyncio client for the API server that speaks raw JSON, and an informer over it.

The node handles every pod of a 1,000-index Job; building ``V1Pod`` models for each watch event
costs more than the rest of the node. Authentication comes from the kubeconfig through
``kubernetes_asyncio``'s loader; concurrency is bounded.

The retry decisions and the watch loop are the project's own (``hooks.retry``, ``hooks.watch``):

- ``KubeClient.request`` asks a ``RetryPolicy`` (``REQUEST_POLICY``: 6 attempts, 0.2 s doubling,
  no jitter, ``Retry-After`` up to 10 s) whether and how long to wait after a transient failure
  (429, 5xx, connection resets, timeouts); anything else raises ``ApiError`` at once.
- ``Informer`` is ``resumable_watch`` over this client: list, watch from the list's
  resourceVersion with bookmarks, resume after a broken stream, re-list on 410 reporting the
  objects that vanished meanwhile as DELETED, back off on watches that close at once. A daemon
  adds one rule, as client-go's reflector does: it never gives up. ``RetryForever`` (a
  ``RetryPolicy``) retries every failure of the list or the watch, 1 s apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from airflow_provider_kbatch.hooks.retry import RetryPolicy
from airflow_provider_kbatch.hooks.watch import resumable_watch

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

REQUEST_POLICY = RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=10.0, jitter=0.0)
# What a request can fail with before an HTTP status arrives (RetryPolicy says which are transient).
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class ApiError(Exception):
    """An HTTP error status (``status``), or 0 when the API server could not be reached."""

    def __init__(self, status: int, body: Any, what: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{what}: HTTP {status}: {message}")


def q(value: str) -> str:
    return quote(value, safe="")


class KubeClient:
    def __init__(
        self,
        host: str,
        ssl_context: ssl.SSLContext | bool,
        headers: Mapping[str, str],
        *,
        policy: RetryPolicy = REQUEST_POLICY,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.host = host.rstrip("/")
        self.policy = policy
        self._sleep = sleep
        self._ssl = ssl_context
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(24)

    @classmethod
    async def from_kubeconfig(cls, path: str) -> KubeClient:
        from kubernetes_asyncio import config
        from kubernetes_asyncio.client import Configuration

        cfg = Configuration()
        await config.load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)
        context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.verify_ssl else False
        )
        if cfg.cert_file and isinstance(context, ssl.SSLContext):
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        headers = {"Accept": JSON, "User-Agent": "kbatch-process-node"}
        auth = await cfg.auth_settings()
        if "BearerToken" in auth:
            headers["Authorization"] = auth["BearerToken"]["value"]
        return cls(str(cfg.host), context, headers)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float = 30,
    ) -> Any:
        """Send a request; retry what ``policy`` calls transient; raise ``ApiError`` for the rest."""
        what = f"{method} {path}"
        attempt = 1
        while True:
            try:
                status, headers, payload = await self._send(method, path, params, body, content_type, timeout)
            except TRANSPORT_ERRORS as err:
                pause = self.policy.delay(attempt, exc=err)
                if pause is None:
                    raise ApiError(0, str(err), what) from err
                log.debug("%s: %s; retrying in %.1fs", what, err, pause)
            else:
                if status < 400:
                    return payload
                pause = self.policy.delay(attempt, status=status, headers=headers)
                if pause is None:
                    raise ApiError(status, payload, what)
            await self._sleep(pause)
            attempt += 1

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float,
    ) -> tuple[int, Mapping[str, str], Any]:
        """One attempt: the status, the headers and the decoded body."""
        async with (
            self._limit,
            self.session.request(
                method,
                self.host + path,
                params=dict(params or {}),
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type} if body is not None else None,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp,
        ):
            text = await resp.text()
            status, headers = resp.status, resp.headers
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return status, headers, payload

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Any:
        try:
            return await self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    @asynccontextmanager
    async def watch(
        self, path: str, resource_version: str, params: Mapping[str, Any] | None = None, *, timeout: int = 300
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a watch from ``resource_version`` (bookmarks allowed) and give its events, ERROR
        events included, as ``resumable_watch`` reads them; an HTTP error raises ``ApiError``."""
        query = dict(params or {})
        query.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout),
        )
        client_timeout = aiohttp.ClientTimeout(total=timeout + 30, sock_read=timeout + 30)
        async with self.session.get(self.host + path, params=query, timeout=client_timeout) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text(), f"WATCH {path}")
            yield _json_lines(resp.content)


async def _json_lines(content: aiohttp.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The objects of a stream of newline-separated JSON documents."""
    buf = b""
    async for chunk in content.iter_any():
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True)
class RetryForever(RetryPolicy):
    """``RetryPolicy``'s delays, but no failure ends the loop: a transient one waits what
    ``RetryPolicy`` says (``Retry-After`` honoured), any other the backoff, attempt after attempt."""

    max_attempts: int = sys.maxsize

    def backoff(self, attempt: int) -> float:
        return super().backoff(min(attempt, 32))  # 2**attempt overflows a float in a long outage

    def delay(
        self,
        attempt: int,
        *,
        status: int | None = None,
        headers: Mapping[str, Any] | Any | None = None,
        exc: BaseException | None = None,
    ) -> float:
        pause = super().delay(attempt, status=status, headers=headers, exc=exc)
        return self.backoff(attempt) if pause is None else pause


WATCH_POLICY = RetryForever(base_delay=1.0, max_delay=1.0, jitter=0.0)
# Errors of an event handler that skip that event; anything else is a bug and ends the informer.
HANDLER_ERRORS = (ApiError, *TRANSPORT_ERRORS, ValueError)

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class Informer:
    """Every object of a collection, kept current: ``run(on_event)`` calls ``on_event(type, obj)``
    for each ADDED, MODIFIED and DELETED object, forever.

    The first list reports every object as ADDED; a re-list (after a 410) reports what changed
    meanwhile, vanished objects as DELETED with their last known state. An event whose handler
    fails with an API or transport error (``HANDLER_ERRORS``) is logged and skipped.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        policy: RetryPolicy = WATCH_POLICY,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.policy = policy
        self._sleep = sleep
        self._clock = clock

    async def _list(self) -> tuple[list[dict[str, Any]], str]:
        listing = await self.client.request("GET", self.path, params=self.params, timeout=60)
        return list(listing.get("items") or []), str(listing["metadata"]["resourceVersion"])

    def _open(self, resource_version: str) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        return self.client.watch(self.path, resource_version, self.params)

    async def run(self, on_event: EventHandler) -> None:
        events = resumable_watch(
            self._list, self._open, policy=self.policy, sleep=self._sleep, clock=self._clock
        )
        async with aclosing(events):
            async for kind, obj in events:
                try:
                    await on_event(kind, obj)
                except HANDLER_ERRORS as err:
                    name = (obj.get("metadata") or {}).get("name")
                    log.warning("watch %s: handling %s %s failed (%s); going on", self.path, kind, name, err)
