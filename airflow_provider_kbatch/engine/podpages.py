"""A Job's pods, a page at a time, and the little of each pod kept (a Job of 100,000 indexes).

A full pod object is 5-10 KB of JSON (env, volumes, managed fields); 100,000 of them in one list
are a gigabyte in the worker or the triggerer. Everything that reads a Job's pods reads them
through :func:`pages` / :func:`apages` (``limit``/``continue``, ``LIST_PAGE_SIZE`` pods a request,
the hook's ``pod_pages``) and keeps, if anything, :func:`~airflow_provider_kbatch.status.slim_pod`
of the pods it needs: the failed ones for the failure message, the result of each succeeded index.

A hook without ``pod_pages`` (a test fake) is read with one ``list_pods`` call, as one page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any


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
