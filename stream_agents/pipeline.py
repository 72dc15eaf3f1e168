"""An agent's batches of chunk messages: applied in order, two at a time.

Taken one at a time (Faust's ``take()``, which hands over the next batch once
the body has returned for the last one), Postgres idles while the agent
publishes a batch's outcomes, takes the next batch, admits it and reads its
first rows, and the agent idles while Postgres commits. Here the next batch
starts once every row of the one before is prepared, and writes ahead of it as
far as that is safe (``stream_agents/turn.py``): at most two are in flight.

Each batch's messages are acknowledged by hand (``noack_take()``), once its
outcomes are published and the batch before's messages are acknowledged: an
offset is committed only when every row before it has its outcome on the way
to ClickHouse, as with ``take()``.

A batch that put chunks in the backlog is waited for whole: the next one's
admission must find them there, or its chunks of those accounts would overtake them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from stream_agents.turn import Turn

#: Applies a batch's messages: (values, its turn, the turn of the batch before).
Handle = Callable[[Sequence[bytes], Turn, Turn | None], Awaitable[None]]


@dataclass(frozen=True)
class _InFlight:
    turn: Turn
    task: asyncio.Task[None]


class Pipeline:
    """``async with Pipeline(handle) as batches``, then ``await batches.submit(...)``
    for each batch; leaving waits for those in flight (or cancels them, on an error)."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle
        self._last: _InFlight | None = None
        self._before_last: _InFlight | None = None

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        tasks = [b.task for b in (self._before_last, self._last) if b is not None]
        if exc is not None:
            # Not acknowledged: Kafka delivers them again, and the ledger replays
            # what had committed.
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=exc is not None)

    async def submit(
        self, values: Sequence[bytes], acknowledge: Callable[[], Awaitable[object]]
    ) -> None:
        """Start applying a batch; return once the next one may start."""
        before = self._last
        turn = Turn()
        task = asyncio.create_task(self._run(values, acknowledge, turn, before))
        self._before_last, self._last = before, _InFlight(turn, task)
        if before is not None:
            await before.task  # at most two in flight
        await self._ready_for_next(self._last)

    async def _run(
        self,
        values: Sequence[bytes],
        acknowledge: Callable[[], Awaitable[object]],
        turn: Turn,
        before: _InFlight | None,
    ) -> None:
        await self._handle(values, turn, None if before is None else before.turn)
        if before is not None:
            await before.task  # acknowledged in order
        await acknowledge()

    @staticmethod
    async def _ready_for_next(batch: _InFlight) -> None:
        prepared = asyncio.ensure_future(batch.turn.prepared.wait())
        try:
            await asyncio.wait({prepared, batch.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            prepared.cancel()
        if batch.task.done() or batch.turn.deferring:
            await batch.task
