"""In-memory fakes for the hook tests: an API server for procedures, and watch streams."""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from kubernetes import client

from airflow_provider_kbatch.errors import api_error
from airflow_provider_kbatch.hooks.calls import KINDS, ApiCall

_SANITIZE = client.ApiClient().sanitize_for_serialization


def to_dict(model: Any) -> dict[str, Any]:
    """A real ``kubernetes.client`` model as the camelCase dict the API server would send."""
    return _SANITIZE(model)  # type: ignore[no-any-return]


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return to_dict(
        client.V1Status(
            api_version="v1",
            kind="Status",
            status="Failure",
            code=code,
            reason=reason,
            message=message,
            details=client.V1StatusDetails(**details) if details else None,
        )
    )


def fail(code: int, reason: str, message: str, **details: Any) -> Exception:
    return api_error(code, reason, status_body(code, reason, message, **details))


_METHOD_KIND = {suffix: kind for kind, (_, suffix, _) in KINDS.items()}


class FakeApi:
    """A tiny namespaced object store with resourceVersions, answering :class:`ApiCall` like the
    hooks' executors do (decoded JSON, or a raised KbatchApiError). Every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        # Run before a call is answered; may raise or change the store (another writer).
        self.before: list[Callable[[ApiCall], None]] = []
        self.page_size: int | None = None

    def put(self, kind: str, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta["resourceVersion"] = str(next(self._rv))
        stored.setdefault("kind", kind)
        self.objects[(kind, namespace, meta["name"])] = stored
        return copy.deepcopy(stored)

    def __call__(self, call: ApiCall) -> Any:
        self.calls.append(call)
        for hook in list(self.before):
            hook(call)
        verb, _, suffix = call.method.partition("_")
        kind = _METHOD_KIND[suffix]
        kw = dict(call.kwargs)
        return getattr(self, f"_{verb}")(kind, kw["namespace"], kw)

    def _existing(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        if (kind, ns, name) not in self.objects:
            raise fail(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        return self.objects[(kind, ns, name)]

    def _read(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._existing(kind, ns, kw["name"]))

    def _create(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        name = kw["body"]["metadata"]["name"]
        if (kind, ns, name) in self.objects:
            raise fail(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists', name=name)
        return self.put(kind, ns, kw["body"])

    def _replace(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        current = self._existing(kind, ns, kw["name"])
        if kw["body"]["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise fail(409, "Conflict", "the object has been modified; please apply your changes")
        body = copy.deepcopy(kw["body"])
        body["metadata"]["uid"] = current["metadata"]["uid"]
        return self.put(kind, ns, body)

    def _patch(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        merged = copy.deepcopy(self._existing(kind, ns, kw["name"]))
        for field, value in kw["body"].items():
            merged.setdefault(field, {}).update(value)
        return self.put(kind, ns, merged)

    def _delete(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        self._existing(kind, ns, kw["name"])
        del self.objects[(kind, ns, kw["name"])]
        return to_dict(client.V1Status(status="Success"))

    def _list(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items()) if k == kind and n == ns]
        start = int(kw.get("_continue") or 0)
        size = self.page_size or len(items) or 1
        page = items[start : start + size]
        for item in page:
            item.pop("kind", None)
        metadata = {"resourceVersion": str(next(self._rv))}
        if start + size < len(items):
            metadata["continue"] = str(start + size)
        return {"kind": f"{kind}List", "metadata": metadata, "items": page}


class FakeStream:
    """One scripted watch connection: events to send, then an optional error or a normal end."""

    def __init__(self, *events: Mapping[str, Any], error: BaseException | None = None) -> None:
        self.events = list(events)
        self.error = error
        self.opened_at: str | None = None
        self.closed = False


class FakeWatchServer:
    """``open_fn`` for ``resumable_watch``: hands out scripted streams in order."""

    def __init__(self, *streams: FakeStream | BaseException) -> None:
        self.streams = list(streams)
        self.opened: list[str] = []
        self.served: list[FakeStream] = []

    def __call__(self, resource_version: str) -> Any:
        return self._open(resource_version)

    @asynccontextmanager
    async def _open(self, resource_version: str) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        self.opened.append(resource_version)
        if not self.streams:
            raise AssertionError("no more scripted watch streams")
        stream = self.streams.pop(0)
        if isinstance(stream, BaseException):
            raise stream
        stream.opened_at = resource_version
        self.served.append(stream)
        try:
            yield self._events(stream)
        finally:
            stream.closed = True

    @staticmethod
    async def _events(stream: FakeStream) -> AsyncIterator[Mapping[str, Any]]:
        for event in stream.events:
            yield event
        if stream.error is not None:
            raise stream.error


def job(name: str, rv: str, *, uid: str = "uid-1", **status: Any) -> dict[str, Any]:
    """A Job dict built from the real model."""
    return to_dict(
        client.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=client.V1ObjectMeta(name=name, namespace="ns", uid=uid, resource_version=rv),
            spec=client.V1JobSpec(
                completions=2,
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy="Never", containers=[client.V1Container(name="main", image="python")]
                    )
                ),
            ),
            status=client.V1JobStatus(**status),
        )
    )


def event(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": dict(obj)}


def bookmark(rv: str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": "Job", "metadata": {"resourceVersion": rv}}}


def gone_event() -> dict[str, Any]:
    return {"type": "ERROR", "object": status_body(410, "Expired", "too old resource version: 1 (50)")}


class Sleeps:
    """Injected sleep recording the delays (sync and async)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)
