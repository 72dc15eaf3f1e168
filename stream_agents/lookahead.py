"""Items made ahead on a worker thread and handed to the event loop in order.

A batch's statements go to Postgres one after the other; between them the
event loop should only send and receive. The work that prepares the next
statement (reading columns, splitting rounds, encoding rows) runs here, on a
worker thread, while Postgres applies the current one. Arrow's and numpy's
kernels release the GIL; the rest (Python, orjson) shares it with the loop.

``async with Lookahead(make) as ahead`` starts ``make()`` (a generator) on a
thread; ``async for item in ahead`` receives its items as they are made. On
leaving, the thread is told to stop after the item it is making, and the exit
waits for it: nothing the generator touches is still changing afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    """The generator is exhausted."""


class Lookahead(Generic[T]):
    def __init__(self, make: Callable[[], Generator[T, None, None]]) -> None:
        self._make = make
        self._items: asyncio.Queue[T | _End | BaseException] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Lookahead[T]:
        self._thread = asyncio.ensure_future(
            asyncio.to_thread(self._run, asyncio.get_running_loop())
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.gather(self._thread, return_exceptions=True)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._received()

    async def _received(self) -> AsyncIterator[T]:
        while True:
            item = await self._items.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the worker thread: make the items until done or told to stop."""
        hand = self._items.put_nowait
        items = self._make()
        try:
            for item in items:
                loop.call_soon_threadsafe(hand, item)
                if self._stop.is_set():
                    break
            loop.call_soon_threadsafe(hand, _End())
        except BaseException as exc:  # raised on the loop, where the items are awaited
            loop.call_soon_threadsafe(hand, exc)
        finally:
            items.close()  # here, on this thread: its cleanup is done when the exit returns
