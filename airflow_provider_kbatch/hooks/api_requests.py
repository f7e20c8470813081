"""API requests, client-independent (sans-IO, pure): :class:`ApiCall` and :class:`Sleep` (the steps
a procedure yields), the request builders, and the decoding of responses and streams (JSON
bodies, list pages, the server version, watch lines, log lines).

The procedures that yield these steps, and the drivers that run them, are in
:mod:`airflow_provider_kbatch.hooks.calls`, which re-exports every name here (its import path).
Pure: imports neither a Kubernetes client nor Airflow.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

ApiName = Literal["BatchV1Api", "CoreV1Api", "PolicyV1Api", "VersionApi"]
Decode = Literal["json", "text", "raw"]
Kind = Literal["Job", "Pod", "ConfigMap", "PersistentVolumeClaim", "Event", "PodDisruptionBudget"]
Propagation = Literal["Foreground", "Background", "Orphan"]

LIST_PAGE_SIZE = 500
MERGE_PATCH = "application/merge-patch+json"

# kind -> (generated API class, method suffix, apiVersion)
KINDS: dict[str, tuple[ApiName, str, str]] = {
    "Job": ("BatchV1Api", "namespaced_job", "batch/v1"),
    "Pod": ("CoreV1Api", "namespaced_pod", "v1"),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map", "v1"),
    "PersistentVolumeClaim": ("CoreV1Api", "namespaced_persistent_volume_claim", "v1"),
    "Event": ("CoreV1Api", "namespaced_event", "v1"),
    "PodDisruptionBudget": ("PolicyV1Api", "namespaced_pod_disruption_budget", "policy/v1"),
}

_VERBS = {
    "read": "GET",
    "list": "GET",
    "create": "POST",
    "replace": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}


@dataclass(frozen=True)
class ApiCall:
    """One API request, client-independent: ``getattr(<api>(client), method)(**kwargs)``."""

    api: ApiName
    method: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    decode: Decode = "json"

    @property
    def verb(self) -> str:
        """HTTP verb (``GET``, ``POST``, ``PUT``, ``PATCH``, ``DELETE``), for tests and logs."""
        return _VERBS.get(self.method.split("_", 1)[0], "GET")

    @property
    def namespace(self) -> str | None:
        return self.kwargs.get("namespace")

    @property
    def body(self) -> Any:
        return self.kwargs.get("body")


@dataclass(frozen=True)
class Sleep:
    """A procedure step that asks the driver to sleep (with the injected sleep)."""

    seconds: float


Step = ApiCall | Sleep
Proc = Generator[Step, Any, T]


# --- request builders (pure) ----------------------------------------------------------------------


def _call(verb: str, kind: str, decode: Decode = "json", **kwargs: Any) -> ApiCall:
    api, suffix, _ = KINDS[kind]
    return ApiCall(api, f"{verb}_{suffix}", {k: v for k, v in kwargs.items() if v is not None}, decode)


def read_call(kind: Kind, namespace: str, name: str) -> ApiCall:
    return _call("read", kind, name=name, namespace=namespace)


def list_call(
    kind: Kind,
    namespace: str,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = LIST_PAGE_SIZE,
    continue_token: str | None = None,
) -> ApiCall:
    return _call(
        "list",
        kind,
        namespace=namespace,
        label_selector=label_selector or None,
        field_selector=field_selector or None,
        limit=limit,
        _continue=continue_token,
    )


def watch_call(
    kind: Kind,
    namespace: str,
    resource_version: str,
    *,
    timeout_seconds: int,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> ApiCall:
    """A watch from ``resource_version`` with bookmarks and a server-side timeout."""
    return _call(
        "list",
        kind,
        decode="raw",
        namespace=namespace,
        label_selector=label_selector or None,
        field_selector=field_selector or None,
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=resource_version,
        timeout_seconds=timeout_seconds,
    )


def create_call(kind: Kind, namespace: str, body: Mapping[str, Any]) -> ApiCall:
    return _call("create", kind, namespace=namespace, body=body)


def replace_call(kind: Kind, namespace: str, name: str, body: Mapping[str, Any]) -> ApiCall:
    return _call("replace", kind, name=name, namespace=namespace, body=body)


def merge_patch_call(kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> ApiCall:
    return _call("patch", kind, name=name, namespace=namespace, body=patch, _content_type=MERGE_PATCH)


def delete_call(kind: Kind, namespace: str, name: str, *, propagation: Propagation | None = None) -> ApiCall:
    return _call("delete", kind, name=name, namespace=namespace, propagation_policy=propagation)


def pod_log_call(
    namespace: str,
    pod: str,
    *,
    container: str | None = None,
    tail_lines: int | None = None,
    limit_bytes: int | None = None,
    since_seconds: int | None = None,
    previous: bool | None = None,
    follow: bool | None = None,
) -> ApiCall:
    kwargs = {
        "name": pod,
        "namespace": namespace,
        "container": container,
        "tail_lines": tail_lines,
        "limit_bytes": limit_bytes,
        "since_seconds": since_seconds,
        "previous": previous or None,
        "follow": follow or None,
    }
    return ApiCall(
        "CoreV1Api",
        "read_namespaced_pod_log",
        {k: v for k, v in kwargs.items() if v is not None},
        "raw" if follow else "text",
    )


VERSION_CALL = ApiCall("VersionApi", "get_code")


def config_map_body(
    name: str,
    data: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}


# --- response decoding (pure) ---------------------------------------------------------------------


def decode_body(data: bytes | str | None, decode: Decode) -> Any:
    """The decoded result of a non-streaming call: JSON as a dict, or text."""
    if decode == "raw":
        return data
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if decode == "text":
        return data or ""
    return json.loads(data) if data else None


def parse_version(code: Mapping[str, Any]) -> tuple[int, int]:
    """``(major, minor)`` from ``/version`` (tolerates suffixes such as GKE's ``"27+"``)."""

    def number(value: Any) -> int:
        digits = "".join(ch for ch in str(value or "") if ch.isdigit())
        return int(digits) if digits else 0

    if not code.get("major") and str(code.get("gitVersion", "")).startswith("v"):
        major, _, rest = str(code["gitVersion"])[1:].partition(".")
        return number(major), number(rest.partition(".")[0])
    return number(code.get("major")), number(code.get("minor"))


def list_items(kind: str, page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Items of a list response, each completed with the ``kind``/``apiVersion`` lists omit."""
    api_version = KINDS[kind][2] if kind in KINDS else page.get("apiVersion")
    return [{"apiVersion": api_version, "kind": kind, **item} for item in page.get("items") or ()]


class LineSplitter:
    """Incremental splitter of a byte stream into text lines (watch events, logs)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, b""
        return [rest.decode("utf-8", "replace").rstrip("\r")] if rest else []


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Text lines of an async byte stream (no line length limit)."""
    splitter = LineSplitter()
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.flush():
        yield line


def parse_watch_line(line: str) -> dict[str, Any] | None:
    """One watch event (``{"type": ..., "object": {...}}``) from one line; None for a blank line."""
    line = line.strip()
    if not line:
        return None
    event = json.loads(line)
    if not isinstance(event, dict):
        raise ValueError(f"unexpected watch line: {line[:200]}")
    return event
