"""The sink's buffer: when outcome messages go to their insert (pure logic).

The pacer is given its times. The buffer runs on the event loop with a window
of an hour, so whatever it writes in a test it wrote for another reason than
the window ending; the write is a stand-in (test_sink.py writes ClickHouse).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from bulkflow import constants
from stream_agents.sink_buffer import Message, Pacer, SinkBuffer
from tests.support import eventually, settle

pytestmark = pytest.mark.anyio

HOUR = 3600.0


@dataclass(frozen=True)
class Event:
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def plain(value: bytes) -> Event:
    return Event(value)


def drained(value: bytes) -> Event:
    return Event(value, {constants.DRAINED_HEADER: b"1"})


def test_messages_are_due_a_window_after_the_first_of_them() -> None:
    pacer = Pacer(window=0.5, gap=0.25, limit=200)
    assert pacer.due_at() is None
    pacer.added(10.0, 3, drained=False)
    pacer.added(10.4, 1, drained=False)
    assert pacer.due_at() == 10.5


def test_drained_messages_are_due_at_once_unless_an_insert_was_just_made() -> None:
    pacer = Pacer(window=0.5, gap=0.25, limit=200)
    pacer.added(10.0, 1, drained=True)
    assert pacer.due_at() == float("-inf")  # never inserted before: now
    pacer.taken(10.0)
    pacer.added(10.1, 1, drained=True)
    assert pacer.due_at() == 10.25  # the gap after the last insert
    pacer.taken(10.25)
    pacer.added(11.0, 1, drained=False)
    assert pacer.due_at() == 11.5  # taken: the next messages wait for their window


def test_a_full_buffer_is_due_at_once() -> None:
    pacer = Pacer(window=0.5, gap=0.25, limit=3)
    pacer.added(10.0, 2, drained=False)
    assert pacer.due_at() == 10.5
    pacer.added(10.1, 1, drained=False)
    assert pacer.due_at() == float("-inf")


class Writes:
    def __init__(self) -> None:
        self.written: list[list[bytes]] = []
        self.acked: list[bytes] = []
        self.release = asyncio.Event()
        self.release.set()

    async def write(self, values: list[bytes]) -> None:
        await self.release.wait()
        self.written.append(values)

    async def acknowledge(self, events: Sequence[Message]) -> None:
        self.acked += [event.value for event in events]


def seen(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return condition()

    return probe


async def add_each(buffer: SinkBuffer, *values: bytes) -> None:
    for value in values:
        await buffer.add([plain(value)])


async def test_a_drained_message_is_written_at_once_with_those_before_it() -> None:
    writes = Writes()
    async with SinkBuffer(
        writes.write, writes.acknowledge, pacer=Pacer(window=HOUR, gap=0)
    ) as buffer:
        await buffer.add([plain(b"1")])
        await buffer.add([plain(b"2")])
        await settle()
        assert writes.written == []  # their window lasts an hour
        await buffer.add([drained(b"3")])
        await eventually(seen(lambda: writes.acked == [b"1", b"2", b"3"]), "the three acknowledged")
        assert writes.written == [[b"1", b"2", b"3"]]


async def test_a_full_buffer_is_written_without_a_drained_message() -> None:
    writes = Writes()
    async with SinkBuffer(
        writes.write, writes.acknowledge, pacer=Pacer(window=HOUR, limit=3)
    ) as buffer:
        await buffer.add([plain(b"1"), plain(b"2")])
        await buffer.add([plain(b"3")])
        await eventually(
            seen(lambda: writes.written == [[b"1", b"2", b"3"]]), "one insert of three"
        )


async def test_adding_waits_while_the_buffer_is_full_and_its_insert_is_not_done() -> None:
    writes = Writes()
    writes.release.clear()
    async with SinkBuffer(
        writes.write, writes.acknowledge, pacer=Pacer(window=HOUR, limit=2)
    ) as buffer:
        await buffer.add([plain(b"1"), plain(b"2")])  # taken by the writer, which waits
        adding = asyncio.create_task(buffer.add([plain(b"3"), plain(b"4")]))
        await settle()
        assert not adding.done()  # the buffer holds its limit until the writer takes it
        writes.release.set()
        await adding
        await eventually(
            seen(lambda: writes.acked == [b"1", b"2", b"3", b"4"]), "all four acknowledged"
        )
        assert writes.written == [[b"1", b"2"], [b"3", b"4"]]


async def test_a_failed_write_is_raised_by_an_add_and_nothing_is_acknowledged() -> None:
    acked: list[bytes] = []

    async def write(values: list[bytes]) -> None:
        raise OSError("the disk is gone")

    async def acknowledge(events: Sequence[Message]) -> None:
        acked.extend(event.value for event in events)

    async with SinkBuffer(write, acknowledge, pacer=Pacer(window=HOUR, limit=1)) as buffer:
        # The add that finds the writer stopped raises: the first, or the next.
        with pytest.raises(OSError, match="the disk is gone"):
            await add_each(buffer, b"1", b"2")
    assert acked == []
