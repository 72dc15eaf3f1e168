"""The agent's batches two at a time: when the next starts, acknowledgement order (pure logic).

The batches are stand-ins whose turns the test drives; what a turn lets the
next batch write is tested against Postgres in test_write_ahead.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from schemas.messages import Chunk
from stream_agents.pipeline import Pipeline
from stream_agents.turn import Turn
from tests.stream_agents.support import chunk
from tests.support import eventually, settle

pytestmark = pytest.mark.anyio


class Batches:
    """A handle whose batch n runs until the test finishes it."""

    def __init__(self) -> None:
        self.turns: dict[int, Turn] = {}
        self.afters: dict[int, Turn | None] = {}
        self.finish: dict[int, asyncio.Event] = {}
        self.acked: list[int] = []

    async def handle(self, values: Sequence[bytes], turn: Turn, after: Turn | None) -> None:
        n = int(values[0])
        self.finish[n] = asyncio.Event()
        self.turns[n], self.afters[n] = turn, after
        await self.finish[n].wait()

    def ack(self, n: int) -> Callable[[], Awaitable[None]]:
        async def acknowledge() -> None:
            self.acked.append(n)

        return acknowledge

    async def started(self, n: int) -> None:
        async def probe() -> bool:
            return n in self.turns

        await eventually(probe, f"batch {n} started")


async def test_the_next_batch_starts_once_the_one_before_is_prepared_and_acks_follow_in_order() -> (
    None
):
    batches = Batches()
    async with Pipeline(batches.handle) as pipeline:
        first = asyncio.ensure_future(pipeline.submit([b"0"], batches.ack(0)))
        await batches.started(0)
        await settle()
        assert not first.done()  # batch 0 is not prepared: batch 1 may not start
        batches.turns[0].prepared.set()
        await first

        second = asyncio.ensure_future(pipeline.submit([b"1"], batches.ack(1)))
        await batches.started(1)
        assert batches.afters[1] is batches.turns[0]
        batches.turns[1].prepared.set()
        await settle()
        assert not second.done()  # batch 0 is still in flight: no third batch yet

        batches.finish[1].set()
        await settle()
        assert batches.acked == []  # batch 1 is done, but batch 0 is not acknowledged
        batches.finish[0].set()
        await second

        async def both_acknowledged() -> bool:
            return batches.acked == [0, 1]

        await eventually(both_acknowledged, "batches 0 and 1 acknowledged, in order")


async def test_a_batch_that_deferred_chunks_is_waited_for_whole() -> None:
    batches = Batches()
    async with Pipeline(batches.handle) as pipeline:
        first = asyncio.ensure_future(pipeline.submit([b"0"], batches.ack(0)))
        await batches.started(0)
        batches.turns[0].deferring = True
        batches.turns[0].prepared.set()
        await settle()
        assert not first.done()  # the next admission must find its chunks in the backlog
        batches.finish[0].set()
        await first
        assert batches.acked == [0]


async def test_leaving_on_an_error_cancels_the_batches_in_flight_unacknowledged() -> None:
    batches = Batches()

    async def stopped_after_one_batch() -> None:
        async with Pipeline(batches.handle) as pipeline:
            first = asyncio.ensure_future(pipeline.submit([b"0"], batches.ack(0)))
            await batches.started(0)
            batches.turns[0].prepared.set()
            await first
            raise RuntimeError("the stream stopped")

    with pytest.raises(RuntimeError):
        await stopped_after_one_batch()
    assert batches.acked == []
    assert not batches.finish[0].is_set()


def chunks_of(*actions: tuple[str, str]) -> list[Chunk]:
    return [chunk(action_id, acct, 0, 1, []) for acct, action_id in actions]


def turn_of(*actions: tuple[str, str]) -> Turn:
    turn = Turn()
    turn.take(chunks_of(*actions))
    return turn


def test_a_batch_writes_ahead_only_where_no_account_has_two_actions() -> None:
    before = turn_of(("acme", "a1"), ("globex", "g1"))
    assert turn_of(("acme", "a1"), ("initech", "i1")).may_write_ahead_of(before)
    # Two actions of one account could write one key, each waiting for the other.
    assert not turn_of(("acme", "a2")).may_write_ahead_of(before)
    assert not turn_of(("initech", "i1"), ("initech", "i2")).may_write_ahead_of(before)


def test_a_batch_does_not_write_ahead_of_one_that_settled_or_faltered() -> None:
    settled, faltered = turn_of(("acme", "a1")), turn_of(("acme", "a1"))
    settled.settled.set()
    faltered.faltered.set()
    assert not turn_of(("acme", "a1")).may_write_ahead_of(settled)  # nothing to write ahead of
    assert not turn_of(("acme", "a1")).may_write_ahead_of(faltered)
