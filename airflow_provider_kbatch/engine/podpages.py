"""A Job's pods, a page at a time, and the little of each pod kept (a Job of 100,000 indexes).

A full pod object is 5-10 KB of JSON (env, volumes, managed fields); 100,000 of them in one list
are a gigabyte in the worker or the triggerer. Everything that reads a Job's pods reads them
through :func:`pages` / :func:`apages` (``limit``/``continue``, ``LIST_PAGE_SIZE`` pods a request,
the hook's ``pod_pages``) and keeps, if anything, :func:`slim_pod` of the pods it needs: the
failed ones for the failure message, the result of each succeeded index.

A hook without ``pod_pages`` (a test fake) is read with one ``list_pods`` call, as one page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

# what of a pod's metadata and spec anything after the list reads (status is kept whole)
_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
)


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """``pod`` without what no kbatch reader looks at (managed fields, env, volumes, commands):
    metadata names, times, labels, annotations and owners; the containers' names and images; the
    node; the whole status."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    slim_spec: dict[str, Any] = {
        "containers": [
            {"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or () if c
        ],
    }
    for key in ("nodeName", "restartPolicy"):
        if key in spec:
            slim_spec[key] = spec[key]
    return {
        "metadata": {k: meta[k] for k in _METADATA if k in meta},
        "spec": slim_spec,
        "status": dict(pod.get("status") or {}),
    }


def pages(hook: Any, namespace: str, selector: str) -> Iterator[list[dict[str, Any]]]:
    """The pods matching ``selector``, a page at a time (the sync hook)."""
    paged = getattr(hook, "pod_pages", None)
    if paged is None:
        yield list(hook.list_pods(namespace, selector))
        return
    yield from paged(namespace, selector)


async def apages(hook: Any, namespace: str, selector: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The pods matching ``selector``, a page at a time (the async hook)."""
    paged = getattr(hook, "pod_pages", None)
    if paged is None:
        yield list(await hook.list_pods(namespace, selector))
        return
    async for page in paged(namespace, selector):
        yield page
