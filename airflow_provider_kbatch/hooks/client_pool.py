"""One API client per cluster for the short requests of an event loop (a triggerer's triggers).

Building a kubernetes_asyncio client per request means reading the kubeconfig, building an SSL
context and a TLS handshake every time: with 1,000 triggers ending at once that was half the CPU
of the triggerer's loop (py-spy, ``benchmarks/triggerloop.py``). The :class:`ClientPool` of a loop
(:func:`loop_pool`) keeps one client per key (the cluster: connection id, context, config file)
and leases it to every request:

* a client takes new leases for ``max_age`` seconds, then a new one is opened, so a changed
  connection and the short-lived tokens of exec credential plugins are read again; a retired
  client closes when its last lease ends;
* every client closes when the loop shuts its async generators down (``asyncio.run`` does; a
  triggerer's loop lives as long as the process).

Followed logs lease a second client per cluster (key ``(..., "log streams")``): they hold a
connection for minutes, which would starve the short requests of the first one's pool (100
connections); a loop follows at most ``WaitSettings.process_log_streams`` (64) at once, so one
client's pool serves them. Watches (two per namespace, shared) keep a client of their own. Pure
asyncio: the caller supplies the function that opens a client (an async context manager).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_AGE_SECONDS = 300.0

Opener = Callable[[], Awaitable[AbstractAsyncContextManager[Any]]]


@dataclass(eq=False)  # compared by identity: the pool's list holds the open ones
class _Entry:
    context: AbstractAsyncContextManager[Any]
    client: Any
    born: float
    leases: int = 0
    retired: bool = False


class ClientPool:
    """Leases one client per key; see the module docstring."""

    def __init__(
        self, *, max_age: float = DEFAULT_MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self.max_age, self.clock = max_age, clock
        self._current: dict[Hashable, _Entry] = {}
        self._entries: list[_Entry] = []  # the clients not closed yet, current or retired
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self.opened = 0  # clients opened so far (for tests and figures)

    @asynccontextmanager
    async def lease(self, key: Hashable, opener: Opener) -> AsyncIterator[Any]:
        entry = await self._acquire(key, opener)
        try:
            yield entry.client
        finally:
            entry.leases -= 1
            if entry.retired and entry.leases == 0:
                await self._close(entry)

    async def _acquire(self, key: Hashable, opener: Opener) -> _Entry:
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._current.get(key)
            if entry is not None and self.clock() - entry.born >= self.max_age:
                entry.retired = True
                del self._current[key]
                if entry.leases == 0:
                    await self._close(entry)
                entry = None
            if entry is None:
                context = await opener()
                client = await context.__aenter__()
                entry = self._current[key] = _Entry(context, client, self.clock())
                self._entries.append(entry)
                self.opened += 1
            entry.leases += 1
            return entry

    async def _close(self, entry: _Entry) -> None:
        if entry not in self._entries:
            return
        self._entries.remove(entry)
        await entry.context.__aexit__(None, None, None)

    async def close(self) -> None:
        """Close every client (leases still running keep a closed client: the loop is ending)."""
        self._current.clear()
        for entry in list(self._entries):
            await self._close(entry)

    @property
    def open_clients(self) -> int:
        return len(self._entries)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[ClientPool, Any]] = (
    weakref.WeakKeyDictionary()
)


async def _closer(pool: ClientPool) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await pool.close()


async def loop_pool() -> ClientPool:
    """The running loop's pool, made on first use. Its closer is an async generator started in
    the loop, so the loop's ``shutdown_asyncgens()`` closes the clients."""
    loop = asyncio.get_running_loop()
    found = _POOLS.get(loop)
    if found is None:
        pool = ClientPool()
        closer = _closer(pool)
        _POOLS[loop] = found = (pool, closer)
        await closer.__anext__()  # suspended at its yield until the loop finalises it
    return found[0]
