"""The sink's outcome messages between Kafka and ClickHouse: inserted together,
and at once when the agents have drained their chunks.

ClickHouse pays for every insert (a part, and the embedded engine's ~20 ms
whatever its size), so the sink inserts what arrived within
SINK_BATCH_WITHIN (1 s: ClickHouse advises about one insert a second)
together. Waiting out that window after the last outcomes of a burst only
delays them: an action reported completed in Postgres had its last outcomes
reach ClickHouse up to a window later (the million-row bench, with 0.5 s:
0.25-0.77 s after every row was counted, 2-5% of the run). An agent batch
smaller than AGENT_BATCH_CHUNKS means the agent had no more chunks waiting,
and its outcome messages carry DRAINED_HEADER: the sink
then inserts at once, yet never within SINK_MIN_GAP of its last insert, so
that agents that are always drained (a trickle of small actions) cost at
most one insert per gap.

Messages are acknowledged once inserted, in the order they came; a message
buffered when the process stops is delivered again, and its rows collapse
with their copies in ``row_outcomes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Protocol

from bulkflow import constants


class Message(Protocol):
    """What the sink needs of a Faust event."""

    @property
    def value(self) -> bytes: ...

    @property
    def headers(self) -> object: ...


class Pacer:
    """When buffered messages are due for their insert (pure: times are given)."""

    def __init__(
        self,
        *,
        window: float = constants.SINK_BATCH_WITHIN,
        gap: float = constants.SINK_MIN_GAP,
        limit: int = constants.SINK_BATCH_MESSAGES,
    ) -> None:
        self._window = window
        self._gap = gap
        self.limit = limit
        self._count = 0
        self._first = 0.0  # when the oldest buffered message came
        self._drained = False
        self._last_insert = float("-inf")

    def added(self, now: float, count: int, drained: bool) -> None:
        if not self._count:
            self._first = now
        self._count += count
        self._drained = self._drained or drained

    def taken(self, now: float) -> None:
        """Every buffered message went to an insert starting now."""
        self._count = 0
        self._drained = False
        self._last_insert = now

    def due_at(self) -> float | None:
        """When to insert what is buffered; None when nothing is."""
        if not self._count:
            return None
        if self._count >= self.limit:
            return float("-inf")
        due = self._first + self._window
        if self._drained:
            due = min(due, self._last_insert + self._gap)
        return due


class SinkBuffer:
    """``async with SinkBuffer(write, acknowledge) as buffer``, then ``await
    buffer.add(events)`` as messages come; one task inserts them when due."""

    def __init__(
        self,
        write: Callable[[list[bytes]], Awaitable[object]],
        acknowledge: Callable[[Sequence[Message]], Awaitable[None]],
        *,
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._acknowledge = acknowledge
        self._pacer = pacer or Pacer()
        self._clock = clock
        self._events: list[Message] = []
        self._changed = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SinkBuffer:
        self._writer = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # What is buffered is not acknowledged: Kafka delivers it again.
        assert self._writer is not None
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)

    async def add(self, events: Sequence[Message]) -> None:
        """Buffer the messages; wait while the buffer holds its limit."""
        assert self._writer is not None
        async with self._changed:
            self._events += events
            self._pacer.added(self._clock(), len(events), any(map(_drained, events)))
            self._changed.notify_all()
            await self._changed.wait_for(
                lambda: len(self._events) < self._pacer.limit or self._writer.done()  # type: ignore[union-attr]
            )
        if self._writer.done():
            self._writer.result()  # the writer's failure, raised here
            raise RuntimeError("the sink's writer stopped")

    async def _run(self) -> None:
        try:
            while True:
                events = await self._due()
                await self._write([event.value for event in events])
                await self._acknowledge(events)
        finally:
            async with self._changed:
                self._changed.notify_all()  # an add() waiting for room sees it stopped

    async def _due(self) -> list[Message]:
        """The buffered messages, once they are due; the buffer is empty then."""
        async with self._changed:
            while (due := self._pacer.due_at()) is None or due > self._clock():
                timeout = None if due is None else due - self._clock()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass
            events, self._events = self._events, []
            self._pacer.taken(self._clock())
            self._changed.notify_all()
            return events


def _drained(event: Message) -> bool:
    headers = event.headers  # Faust makes a dict of the record's headers
    return isinstance(headers, dict) and constants.DRAINED_HEADER in headers
