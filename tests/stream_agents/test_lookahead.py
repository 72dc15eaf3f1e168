"""Items made on a worker thread reach the event loop in order; leaving stops the thread."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from stream_agents.lookahead import Lookahead

pytestmark = pytest.mark.anyio


async def test_items_arrive_in_order_from_a_worker_thread() -> None:
    threads: set[int] = set()

    def make() -> Generator[int, None, None]:
        for n in range(50):
            threads.add(threading.get_ident())
            yield n

    async with Lookahead(make) as ahead:
        received = [n async for n in ahead]
    assert received == list(range(50))
    assert threads
    assert threading.get_ident() not in threads


async def test_an_error_is_raised_where_the_item_is_awaited() -> None:
    def make() -> Generator[str, None, None]:
        yield "first"
        raise ValueError("broken part")

    received: list[str] = []

    async def receive() -> None:
        async with Lookahead(make) as ahead:
            async for item in ahead:
                received.append(item)

    with pytest.raises(ValueError, match="broken part"):
        await receive()
    assert received == ["first"]


async def test_leaving_early_stops_the_thread_before_it_exits() -> None:
    """Once the block is left, the generator is closed: nothing it touches still changes."""
    made: list[int] = []
    closed = threading.Event()

    def make() -> Generator[int, None, None]:
        try:
            for n in range(10_000_000):  # seconds of work, unless told to stop
                made.append(n)
                yield n
        finally:
            closed.set()

    async with Lookahead(make) as ahead:
        async for n in ahead:
            assert n == 0
            break
    assert closed.is_set()  # closed on its thread before the exit returned: it makes no more
    assert 1 <= len(made) < 10_000_000
