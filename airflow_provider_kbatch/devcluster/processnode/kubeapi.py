"""A small asyncio client for the API server that speaks raw JSON.

The node handles every pod of a 1,000-index Job; building ``V1Pod`` models for each watch event
costs more than the rest of the node. Authentication comes from the kubeconfig through
``kubernetes_asyncio``'s loader. Transient errors (429 with ``Retry-After``, 5xx, connection
resets) are retried with a capped backoff; concurrency is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

TRANSIENT = {429, 500, 502, 503, 504}
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: Any, what: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{what}: HTTP {status}: {message}")


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def q(value: str) -> str:
    return quote(value, safe="")


class KubeClient:
    def __init__(self, host: str, ssl_context: ssl.SSLContext | bool, headers: Mapping[str, str]) -> None:
        self.host = host.rstrip("/")
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
        context: ssl.SSLContext | bool
        if cfg.verify_ssl:
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        else:
            context = False
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
        attempts: int = 6,
    ) -> Any:
        """Send one request; retry transient failures; raise ``ApiError`` for the rest."""
        delay = 0.2
        for attempt in range(attempts):
            try:
                async with self._limit:
                    async with self.session.request(
                        method,
                        self.host + path,
                        params=dict(params or {}),
                        data=None if body is None else json.dumps(body),
                        headers={"Content-Type": content_type} if body is not None else None,
                        timeout=aiohttp.ClientTimeout(total=timeout),
                    ) as resp:
                        text = await resp.text()
                        status = resp.status
                        retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as err:
                if attempt == attempts - 1:
                    raise ApiError(0, str(err), f"{method} {path}") from err
                log.debug("%s %s: %s; retrying", method, path, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
                continue
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            if status < 400:
                return payload
            if status in TRANSIENT and attempt < attempts - 1:
                wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
                await asyncio.sleep(min(wait, 10))
                delay = min(delay * 2, 5)
                continue
            raise ApiError(status, payload, f"{method} {path}")
        raise AssertionError("unreachable")

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Any:
        try:
            return await self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def watch(
        self, path: str, resource_version: str, params: Mapping[str, Any] | None = None, *, timeout: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events from ``resource_version`` (bookmarks included); ``WatchExpired`` on 410."""
        query = dict(params or {})
        query.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout),
        )
        client_timeout = aiohttp.ClientTimeout(total=timeout + 30, sock_read=timeout + 30)
        async with self.session.get(self.host + path, params=query, timeout=client_timeout) as resp:
            if resp.status == 410:
                raise WatchExpired(path)
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text(), f"WATCH {path}")
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while True:
                    newline = buf.find(b"\n")
                    if newline == -1:
                        break
                    line, buf = buf[:newline], buf[newline + 1 :]
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        obj = event.get("object") or {}
                        if obj.get("code") == 410:
                            raise WatchExpired(path)
                        raise ApiError(int(obj.get("code") or 0), obj, f"WATCH {path}")
                    yield event


class Informer:
    """List, then watch from the list's resourceVersion; re-list on 410 or a broken stream.

    ``on_list(items)`` receives the full current set after every (re)list, ``on_event(type, obj)``
    each change.
    """

    def __init__(self, client: KubeClient, path: str, params: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.synced = asyncio.Event()

    async def run(self, on_list: Any, on_event: Any) -> None:
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    listing = await self.client.request("GET", self.path, params=self.params, timeout=60)
                    resource_version = listing["metadata"]["resourceVersion"]
                    await on_list(listing.get("items") or [])
                    self.synced.set()
                async for event in self.client.watch(self.path, resource_version, self.params):
                    obj = event["object"]
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        await on_event(event["type"], obj)
            except WatchExpired:
                log.info("watch %s expired; listing again", self.path)
                resource_version = None
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError) as err:
                log.warning("watch %s interrupted (%s); resuming", self.path, err)
                await asyncio.sleep(1)
