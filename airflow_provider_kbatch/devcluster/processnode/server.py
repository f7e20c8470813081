"""The kubelet's HTTPS endpoint (``/containerLogs``, ``/healthz``) and the node's control socket.

``/containerLogs/{namespace}/{pod}/{container}`` serves what the API server proxies for
``pods/log``: ``follow``, ``tailLines``, ``timestamps``, ``sinceSeconds``, ``sinceTime``,
``limitBytes`` and ``previous``. A pod of a simulated node has an empty log (followed: open until it ends). It listens on 127.0.0.1 only, with a self-signed certificate (the
API server is started without ``--kubelet-certificate-authority``) and no client authentication:
a development tool.

The control socket (``<state dir>/node.sock``, mode 0600) takes one JSON request per line and
answers one JSON line: ``{"op": "ping"}``, ``{"op": "containers"}`` (running containers and their
pids) and ``{"op": "kill", "namespace", "pod", "container", "signal", "exit_code"}``
(``faults.kill_container`` uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from airflow_provider_kbatch.devcluster.pki import ensure_self_signed
from airflow_provider_kbatch.devcluster.processnode.containerlogs import (
    RenderState,
    log_path,
    read_entries,
    render,
    since_threshold,
    tail_offset,
)
from airflow_provider_kbatch.devcluster.processnode.pods import PodWorker

log = logging.getLogger(__name__)

SOCKET_NAME = "node.sock"


class Registry(Protocol):
    def find(self, namespace: str, name: str) -> PodWorker | None: ...

    def running(self) -> list[dict[str, Any]]: ...


def ensure_serving_cert(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """The kubelet's self-signed certificate for 127.0.0.1, ``localhost`` and the node names (kept
    across restarts while valid)."""
    hosts = ["127.0.0.1", "localhost", *names]
    return ensure_self_signed(
        directory / "kubelet.crt", directory / "kubelet.key", "kbatch-process-node", hosts
    )


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "yes")


def _int(value: str | None) -> int | None:
    return None if value is None or value == "" else int(value)


def find_pod_dir(pods_dir: Path, namespace: str, name: str) -> Path | None:
    """The newest on-disk directory of ``namespace/name`` (pods the node no longer tracks)."""
    candidates = [p for p in pods_dir.glob(f"{namespace}_{name}_*") if p.is_dir()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _simulated(registry: Registry, namespace: str, name: str) -> bool:
    """A pod of a simulated node: it ran no process, its log is empty."""
    check = getattr(registry, "simulated", None)
    return bool(check(namespace, name)) if check is not None else False


class KubeletServer:
    def __init__(self, registry: Registry, pods_dir: Path, port: int, cert: tuple[Path, Path]) -> None:
        self.registry = registry
        self.pods_dir = pods_dir
        self.port = port
        self.cert = cert
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/healthz", self.healthz)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        log.info("kubelet endpoint on https://127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        query = request.query
        try:
            follow, previous = _flag(query.get("follow")), _flag(query.get("previous"))
            state = RenderState(
                timestamps=_flag(query.get("timestamps")),
                since=since_threshold(
                    _int(query.get("sinceSeconds")), query.get("sinceTime"), time.time_ns()
                ),
                limit=_int(query.get("limitBytes")),
            )
            tail = _int(query.get("tailLines"))
        except ValueError as err:
            return web.Response(status=400, text=f"bad query: {err}")
        worker = self.registry.find(ns, pod)
        pod_dir = worker.dir if worker is not None else find_pod_dir(self.pods_dir, ns, pod)
        if pod_dir is None and worker is None and _simulated(self.registry, ns, pod):
            # empty; followed, open until the containers end (a kubelet holds a follow open)
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await response.prepare(request)
            ended = getattr(self.registry, "simulated_ended", None)
            if follow and ended is not None:
                await ended(ns, pod)
            await response.write_eof()
            return response
        if pod_dir is None:
            return web.Response(status=404, text=f'pod "{pod}" in namespace "{ns}" not found on this node')
        if worker is not None and container not in worker.container_names():
            return web.Response(status=400, text=f'container "{container}" in pod "{pod}" is not valid')
        path = log_path(pod_dir, container, previous=previous)
        if not path.exists():
            if previous:
                text = f'previous terminated container "{container}" in pod "{pod}" not found'
            else:
                text = f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
            return web.Response(status=400, text=text)
        writer = None if previous or worker is None else worker.writers.get(container)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        offset = tail_offset(path, tail) if tail is not None and tail >= 0 else 0
        last_read = not follow or writer is None
        while True:
            entries, offset = read_entries(path, offset)
            data = render(entries, state)
            if data:
                await response.write(data)
            if last_read or state.exhausted:
                break
            assert writer is not None
            last_read = writer.closed  # once closed, one more read takes what it wrote last
            if not last_read:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(writer.changed.wait(), timeout=1.0)
        await response.write_eof()
        return response


class ControlServer:
    """The unix socket for fault injection and inspection."""

    def __init__(self, registry: Registry, path: Path) -> None:
        self.registry = registry
        self.path = path
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.path.unlink(missing_ok=True)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "containers":
            return {"ok": True, "containers": self.registry.running()}
        if op == "kill":
            worker = self.registry.find(str(request.get("namespace")), str(request.get("pod")))
            if worker is None:
                return {
                    "ok": False,
                    "error": f"pod {request.get('namespace')}/{request.get('pod')} is not on this node",
                }
            try:
                result = worker.kill(
                    request.get("container"), request.get("signal"), request.get("exit_code")
                )
            except LookupError as err:
                return {"ok": False, "error": str(err)}
            return {"ok": True, **result}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            try:
                reply = self.answer(json.loads(line))
            except (ValueError, TypeError) as err:
                reply = {"ok": False, "error": f"bad request: {err}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
