"""Building the watch requests of :class:`~airflow_provider_kbatch.hooks.async_kbatch.AsyncKbatchHook`
(no client import): :func:`watch_opener` makes the ``open_watch(resource_version)`` that
:func:`~airflow_provider_kbatch.hooks.watch.resumable_watch` calls, and :func:`watch_events` reads
an open watch response (aiohttp's ``content.iter_any()``), one event per line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from airflow_provider_kbatch.hooks import calls

OpenWatch = Callable[[str], AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]]


def watch_opener(
    client: Callable[[], AbstractAsyncContextManager[Any]],
    invoke: Callable[..., Awaitable[Any]],
    kind: calls.Kind,
    namespace: str,
    *,
    timeout_seconds: int,
    client_timeout: float,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> OpenWatch:
    """``open_watch(resource_version)``: a watch of ``kind`` from that version, through the hook's
    ``client()`` and ``invoke(api_client, call, **options)``, with the server-side
    ``timeout_seconds`` and the client-side ``client_timeout``; the response is closed on exit."""

    @asynccontextmanager
    async def open_watch(resource_version: str) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        call = calls.watch_call(
            kind,
            namespace,
            resource_version,
            timeout_seconds=timeout_seconds,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        async with client() as api_client:
            response = await invoke(api_client, call, _request_timeout=client_timeout)
            try:
                yield watch_events(response)
            finally:
                response.close()

    return open_watch


async def watch_events(response: Any) -> AsyncIterator[Mapping[str, Any]]:
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
