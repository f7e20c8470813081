"""The event loop's shared API clients (pure asyncio, fake clients)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from airflow_provider_kbatch.hooks.client_pool import ClientPool, loop_pool


class Opener:
    """Opens numbered fake clients and records which are closed."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.closed: list[int] = []

    async def __call__(self) -> Any:
        number = len(self.opened) + 1
        self.opened.append(number)

        @asynccontextmanager
        async def client() -> Any:
            try:
                yield number
            finally:
                self.closed.append(number)

        return client()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_and_sequential_requests_share_one_client_per_key() -> None:
    pool, opener = ClientPool(), Opener()
    seen: list[tuple[str, int]] = []

    async def request(key: str) -> None:
        async with pool.lease(key, opener) as client:
            await asyncio.sleep(0)
            seen.append((key, client))

    await asyncio.gather(*(request("a") for _ in range(50)), *(request("b") for _ in range(5)))
    async with pool.lease("a", opener) as again:
        assert again == 1
    assert sorted(set(seen)) == [("a", 1), ("b", 2)] and pool.opened == 2
    assert opener.closed == [] and pool.open_clients == 2


async def test_an_old_client_takes_no_new_lease_and_closes_after_its_last() -> None:
    clock, opener = Clock(), Opener()
    pool = ClientPool(max_age=300, clock=clock)
    async with pool.lease("a", opener) as first:
        clock.now = 301
        async with pool.lease("a", opener) as second:
            assert (first, second) == (1, 2)
            assert opener.closed == []  # the first is still leased
        assert opener.closed == []
    assert opener.closed == [1] and pool.open_clients == 1
    clock.now = 700
    async with pool.lease("a", opener) as third:  # the idle old one closes at once
        assert third == 3
    assert opener.closed == [1, 2] and pool.open_clients == 1


async def test_a_failing_request_returns_its_lease() -> None:
    clock, opener = Clock(), Opener()
    pool = ClientPool(max_age=10, clock=clock)
    try:
        async with pool.lease("a", opener):
            raise RuntimeError("the request failed")
    except RuntimeError:
        pass
    clock.now = 11
    async with pool.lease("a", opener):
        pass
    assert opener.closed == [1]  # not kept open by a lost lease


def test_the_loops_clients_close_when_asyncio_run_ends() -> None:
    opener = Opener()

    async def main() -> ClientPool:
        pool = await loop_pool()
        assert await loop_pool() is pool  # one per loop
        async with pool.lease("a", opener):
            pass
        return pool

    first = asyncio.run(main())
    assert opener.closed == [1] and first.open_clients == 0
    second = asyncio.run(main())  # a new loop, a new pool
    assert second is not first and opener.closed == [1, 2]
