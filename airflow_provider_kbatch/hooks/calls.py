"""Pure request building and API procedures shared by the sync and async hooks (sans-IO).

A request is an :class:`ApiCall`: which generated API class (``BatchV1Api``, ``CoreV1Api``,
``VersionApi``), which of its methods, and the keyword arguments. The ``kubernetes`` and
``kubernetes_asyncio`` clients generate the same classes and method names, so one description
serves both; the hooks only *execute* calls (with ``_preload_content=False``, reading the server's
JSON as it is: camelCase dicts, nothing dropped by model deserialisation).

An operation made of several requests (create and read back on 409, paginate a list, the
compare-and-swap loop of the run ledger) is a *procedure*: a generator that yields
:class:`ApiCall` or :class:`Sleep` steps, receives each call's decoded result, and has the
call's :class:`~airflow_provider_kbatch.errors.KbatchApiError` thrown into it. :func:`run`
and :func:`arun` drive a procedure with a sync or async executor, so the logic exists once and is
unit-tested against an in-memory fake executor.

This module holds the drivers and the procedures; the steps, the request builders and the
response decoding are in :mod:`airflow_provider_kbatch.hooks.api_requests` (re-exported here, so
``calls.ApiCall``, ``calls.config_map_body`` and the rest keep their import path).

Pure: imports neither a Kubernetes client nor Airflow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from airflow_provider_kbatch.errors import (
    AlreadyExists,
    Conflict,
    JobAlreadyExists,
    KbatchApiError,
    NotFound,
    PodLogNotReady,
)
from airflow_provider_kbatch.hooks.api_requests import KINDS as KINDS
from airflow_provider_kbatch.hooks.api_requests import LIST_PAGE_SIZE as LIST_PAGE_SIZE
from airflow_provider_kbatch.hooks.api_requests import MERGE_PATCH as MERGE_PATCH
from airflow_provider_kbatch.hooks.api_requests import VERSION_CALL as VERSION_CALL
from airflow_provider_kbatch.hooks.api_requests import ApiCall as ApiCall
from airflow_provider_kbatch.hooks.api_requests import ApiName as ApiName
from airflow_provider_kbatch.hooks.api_requests import Decode as Decode
from airflow_provider_kbatch.hooks.api_requests import Kind as Kind
from airflow_provider_kbatch.hooks.api_requests import LineSplitter as LineSplitter
from airflow_provider_kbatch.hooks.api_requests import Proc as Proc
from airflow_provider_kbatch.hooks.api_requests import Propagation as Propagation
from airflow_provider_kbatch.hooks.api_requests import Sleep as Sleep
from airflow_provider_kbatch.hooks.api_requests import Step as Step
from airflow_provider_kbatch.hooks.api_requests import T as T
from airflow_provider_kbatch.hooks.api_requests import config_map_body as config_map_body
from airflow_provider_kbatch.hooks.api_requests import create_call as create_call
from airflow_provider_kbatch.hooks.api_requests import decode_body as decode_body
from airflow_provider_kbatch.hooks.api_requests import delete_call as delete_call
from airflow_provider_kbatch.hooks.api_requests import iter_lines as iter_lines
from airflow_provider_kbatch.hooks.api_requests import list_call as list_call
from airflow_provider_kbatch.hooks.api_requests import list_items as list_items
from airflow_provider_kbatch.hooks.api_requests import merge_patch_call as merge_patch_call
from airflow_provider_kbatch.hooks.api_requests import parse_version as parse_version
from airflow_provider_kbatch.hooks.api_requests import parse_watch_line as parse_watch_line
from airflow_provider_kbatch.hooks.api_requests import pod_log_call as pod_log_call
from airflow_provider_kbatch.hooks.api_requests import read_call as read_call
from airflow_provider_kbatch.hooks.api_requests import replace_call as replace_call
from airflow_provider_kbatch.hooks.api_requests import watch_call as watch_call
from airflow_provider_kbatch.hooks.retry import RetryPolicy

# --- drivers --------------------------------------------------------------------------------------


def run(proc: Proc[T], execute: Callable[[ApiCall], Any], sleep: Callable[[float], object]) -> T:
    """Drive ``proc`` with a synchronous executor (which raises :class:`KbatchApiError`)."""
    value: Any = None
    error: KbatchApiError | None = None
    while True:
        try:
            step = proc.throw(error) if error is not None else proc.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        if isinstance(step, Sleep):
            sleep(step.seconds)
            continue
        try:
            value = execute(step)
        except KbatchApiError as exc:
            error = exc


async def arun(
    proc: Proc[T],
    execute: Callable[[ApiCall], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[object]],
) -> T:
    """Drive ``proc`` with an async executor. Cancellation propagates (never caught here)."""
    value: Any = None
    error: KbatchApiError | None = None
    while True:
        try:
            step = proc.throw(error) if error is not None else proc.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        if isinstance(step, Sleep):
            await sleep(step.seconds)
            continue
        try:
            value = await execute(step)
        except KbatchApiError as exc:
            error = exc


# Pause between lost compare-and-swap races: short, fully jittered so writers spread out.
CAS_BACKOFF = RetryPolicy(max_attempts=1_000_000, base_delay=0.02, max_delay=1.0, jitter=1.0)


# --- procedures (pure generators) -----------------------------------------------------------------


def server_version() -> Proc[tuple[int, int]]:
    return parse_version((yield VERSION_CALL))


def get(kind: Kind, namespace: str, name: str) -> Proc[dict[str, Any] | None]:
    """Read one object; None when it does not exist."""
    try:
        return (yield read_call(kind, namespace, name))  # type: ignore[no-any-return]
    except NotFound:
        return None


def create(kind: Kind, namespace: str, body: Mapping[str, Any]) -> Proc[dict[str, Any]]:
    """Create an object (409 raises :class:`AlreadyExists`)."""
    return (yield create_call(kind, namespace, body))  # type: ignore[no-any-return]


def delete(kind: Kind, namespace: str, name: str, *, propagation: Propagation | None = None) -> Proc[bool]:
    """Delete an object; False when it was already gone."""
    try:
        yield delete_call(kind, namespace, name, propagation=propagation)
    except NotFound:
        return False
    return True


def list_with_version(
    kind: Kind,
    namespace: str,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    page_size: int = LIST_PAGE_SIZE,
    keep: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> Proc[tuple[list[dict[str, Any]], str]]:
    """All matching objects (paginated) and the list's ``resourceVersion`` (to start a watch);
    ``keep`` picks what of each object is kept, a page at a time (a Job's pods at 100,000
    indexes: :func:`~airflow_provider_kbatch.status.watched_pod`)."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    resource_version = ""
    while True:
        page = yield list_call(
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=page_size,
            continue_token=token,
        )
        listed = list_items(kind, page)
        items.extend(listed if keep is None else map(keep, listed))
        metadata = page.get("metadata") or {}
        resource_version = metadata.get("resourceVersion") or resource_version
        token = metadata.get("continue") or None
        if not token:
            return items, resource_version


def list_page(
    kind: Kind,
    namespace: str,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    page_size: int = LIST_PAGE_SIZE,
    continue_token: str | None = None,
) -> Proc[tuple[list[dict[str, Any]], str | None]]:
    """One page of matching objects (``limit``/``continue``) and the token of the next page
    (None after the last): what callers that must not hold every object at once iterate with."""
    page = yield list_call(
        kind,
        namespace,
        label_selector=label_selector,
        field_selector=field_selector,
        limit=page_size,
        continue_token=continue_token,
    )
    return list_items(kind, page), (page.get("metadata") or {}).get("continue") or None


def list_objects(
    kind: Kind, namespace: str, *, label_selector: str | None = None, field_selector: str | None = None
) -> Proc[list[dict[str, Any]]]:
    items, _ = yield from list_with_version(
        kind, namespace, label_selector=label_selector, field_selector=field_selector
    )
    return items


def create_job(namespace: str, manifest: Mapping[str, Any]) -> Proc[dict[str, Any]]:
    """Create a Job; on 409 read the existing one back and raise :class:`JobAlreadyExists` with it.

    A retried create whose first attempt did reach the server also ends here: the caller checks
    the Job is its own (labels, spec hash) and adopts it.
    """
    try:
        return (yield create_call("Job", namespace, manifest))  # type: ignore[no-any-return]
    except AlreadyExists as exc:
        name = (manifest.get("metadata") or {}).get("name")
        existing = (yield from get("Job", namespace, name)) if name else None
        if existing is None:  # generateName, or deleted again in between
            raise
        raise JobAlreadyExists(existing) from exc


def set_suspend(namespace: str, name: str, suspend: bool) -> Proc[dict[str, Any]]:
    return (yield merge_patch_call("Job", namespace, name, {"spec": {"suspend": bool(suspend)}}))  # type: ignore[no-any-return]


def read_pod_log(
    namespace: str,
    pod: str,
    *,
    container: str | None = None,
    tail_lines: int | None = None,
    limit_bytes: int | None = None,
    previous: bool = False,
) -> Proc[str]:
    """A pod's log as text. 404 raises NotFound; 400 (not started) raises :class:`PodLogNotReady`."""
    try:
        return (  # type: ignore[no-any-return]
            yield pod_log_call(
                namespace,
                pod,
                container=container,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                previous=previous,
            )
        )
    except KbatchApiError as exc:
        if exc.status == 400:
            raise PodLogNotReady(exc.status, exc.reason, exc.message, exc.causes) from exc
        raise


def replace_config_map(namespace: str, body: Mapping[str, Any]) -> Proc[dict[str, Any]]:
    """Replace a ConfigMap; the body must carry ``metadata.resourceVersion`` (409 -> Conflict)."""
    metadata = body.get("metadata") or {}
    if not metadata.get("resourceVersion"):
        raise ValueError("replace_config_map needs metadata.resourceVersion (compare-and-swap)")
    return (yield replace_call("ConfigMap", namespace, metadata["name"], body))  # type: ignore[no-any-return]


def _missing(wanted: Mapping[str, str] | None, present: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (wanted or {}).items() if (present or {}).get(k) != v}


def update_config_map_cas(
    namespace: str,
    name: str,
    mutate: Callable[[dict[str, str]], dict[str, str]],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    check: Callable[[Mapping[str, Any]], None] | None = None,
    max_attempts: int = 30,
    backoff: RetryPolicy | None = None,
) -> Proc[dict[str, str]]:
    """Compare-and-swap update of a ConfigMap's ``data``; returns the data as written.

    Read (create when missing; a 409 on create means another writer created it: re-read), apply
    the pure ``mutate`` to a fresh copy of ``data``, replace with the ``resourceVersion`` read; on
    409 (another writer won) or 404 (deleted meanwhile) start again from a fresh read, after a short
    jittered pause. ``mutate`` may run several times and must depend only on its argument.
    ``labels`` and ``annotations`` are set on creation and added if missing on update. ``check``,
    when given, is called with every ConfigMap read before ``mutate`` (the object, camelCase): it
    raises to refuse an object that is not the caller's, and nothing is written. Raises
    :class:`Conflict` after ``max_attempts`` lost races.
    """
    pause = backoff or CAS_BACKOFF
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            yield Sleep(pause.backoff(attempt - 1))
        current = yield from get("ConfigMap", namespace, name)
        if current is None:
            body = config_map_body(name, mutate({}), labels, annotations)
            try:
                created = yield create_call("ConfigMap", namespace, body)
            except AlreadyExists:
                continue
            return dict(created.get("data") or {})
        if check is not None:
            check(current)
        data = dict(current.get("data") or {})
        new_data = mutate(dict(data))
        metadata = current.get("metadata") or {}
        missing_labels = _missing(labels, metadata.get("labels"))
        missing_annotations = _missing(annotations, metadata.get("annotations"))
        if new_data == data and not missing_labels and not missing_annotations:
            return data
        body = {
            **current,
            "metadata": {
                **metadata,
                "labels": {**(metadata.get("labels") or {}), **missing_labels},
                "annotations": {**(metadata.get("annotations") or {}), **missing_annotations},
            },
            "data": dict(new_data),
        }
        try:
            replaced = yield replace_call("ConfigMap", namespace, name, body)
        except (Conflict, NotFound):
            continue
        return dict(replaced.get("data") or {})
    raise Conflict(
        409, "Conflict", f"configmap {namespace}/{name}: gave up after {max_attempts} conflicting writes"
    )


def put_config_map(
    namespace: str, body: Mapping[str, Any], *, max_attempts: int = 30, backoff: RetryPolicy | None = None
) -> Proc[dict[str, Any]]:
    """Create the ConfigMap ``body``, or make the existing one of that name hold it: its ``data``
    replaced, ``body``'s labels and annotations added, ``body``'s ``ownerReferences`` set (when
    given). Idempotent; an existing object that already matches is not written. Returns the object.
    Lost races (409 on replace, 404) start again after a jittered pause; :class:`Conflict` after
    ``max_attempts``."""
    pause = backoff or CAS_BACKOFF
    metadata = body.get("metadata") or {}
    name = metadata["name"]
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            yield Sleep(pause.backoff(attempt - 1))
        try:
            return (yield create_call("ConfigMap", namespace, body))  # type: ignore[no-any-return]
        except AlreadyExists:
            pass
        current = yield from get("ConfigMap", namespace, name)
        if current is None:
            continue
        meta = current.get("metadata") or {}
        labels = _missing(metadata.get("labels"), meta.get("labels"))
        annotations = _missing(metadata.get("annotations"), meta.get("annotations"))
        owners = metadata.get("ownerReferences") or meta.get("ownerReferences")
        data = dict(body.get("data") or {})
        same_data = (current.get("data") or {}) == data
        if same_data and not labels and not annotations and owners == meta.get("ownerReferences"):
            return current
        new_meta = {
            **meta,
            "labels": {**(meta.get("labels") or {}), **labels},
            "annotations": {**(meta.get("annotations") or {}), **annotations},
        }
        if owners:
            new_meta["ownerReferences"] = owners
        try:
            return (  # type: ignore[no-any-return]
                yield replace_call(
                    "ConfigMap", namespace, name, {**current, "metadata": new_meta, "data": data}
                )
            )
        except (Conflict, NotFound):
            continue
    raise Conflict(
        409, "Conflict", f"configmap {namespace}/{name}: gave up after {max_attempts} conflicting writes"
    )
