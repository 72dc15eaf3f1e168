"""Dead letters and their replay, against the real Postgres and Kafka.

A batch that fails for good dead-letters its chunks, and the action's later
chunks are held behind them, so that a replay applies every row in file
order: the first occurrence of a key wins, and the counts come out exact.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkflow import constants
from bulkflow.database import connect_pool
from bulkflow.kafka import Producer
from bulkflow.settings import Settings
from schemas.messages import Chunk
from stream_agents import dead_letters
from stream_agents.batch import BatchProcessor
from stream_agents.dead_letters import DeadLetterQueue
from stream_agents.errors import RetriesExhausted
from tests.stream_agents.support import chunk, records_on
from tests.stream_agents.test_batch import counts, new_action
from tests.support import account_id

pytestmark = pytest.mark.anyio


async def published_chunks(settings: Settings, expected: int) -> list[Chunk]:
    """The chunks on the chunk topic, in the order of their partition."""
    records = await records_on(settings, constants.CHUNKS_TOPIC, expected)
    return [Chunk.from_bytes(record.value) for record in records]


async def contact(pool: asyncpg.Pool, acct: str, email: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT first_name, last_row_no FROM contacts WHERE account_id = $1 AND email = $2",
        acct,
        email,
    )
    return dict(row)


async def test_a_replay_applies_held_rows_in_file_order(isolated: Settings) -> None:
    async with connect_pool(isolated, size=2) as pool, Producer.open(isolated) as producer:
        letters = DeadLetterQueue(producer, isolated.topic(constants.DEAD_LETTERS_TOPIC))
        processor = BatchProcessor(pool, letters)
        acct = account_id()
        action_id = await new_action(pool, acct, 4)
        first = chunk(action_id, acct, 0, 1, [{"email": "a@x.io", "first_name": "First"}])
        second = chunk(
            action_id,
            acct,
            1,
            2,
            [{"email": "A@x.io", "first_name": "Second"}, {"email": "b@x.io"}],
        )
        third = chunk(action_id, acct, 2, 4, [{"email": "c@x.io"}])

        # The first chunk's batch fails for good; the later ones are held behind it.
        [failed] = await processor.fail([first], RetriesExhausted(3, TimeoutError()))
        assert failed.codes == "f"
        second_out, third_out = await processor.process([second, third])
        assert second_out.codes + third_out.codes == "fff"
        assert {p.reason for p in second_out.problems.values()} == {"held_for_replay"}
        ended = await counts(pool, action_id)  # held rows count as failed: the action ends
        assert ended == {
            "status": "completed",
            "processed_rows": 4,
            "succeeded": 0,
            "failed": 4,
            "skipped": 0,
        }

        done = await dead_letters.replay(isolated, pool)
        assert (done.replayed, done.applied_meanwhile) == (3, 0)
        assert (await counts(pool, action_id))["status"] == "running"
        replayed = await published_chunks(isolated, 3)
        assert [c.chunk_no for c in replayed] == [0, 1, 2]
        outcomes = await processor.process(replayed)
        assert "".join(o.codes for o in outcomes) == "cscc"
        assert outcomes[1].problems[0].reason == "duplicate"
        assert outcomes[1].problems[0].related_row == 1  # the first occurrence won
        assert await counts(pool, action_id) == {
            "status": "completed",
            "processed_rows": 4,
            "succeeded": 3,
            "failed": 0,
            "skipped": 1,
        }
        assert await contact(pool, acct, "a@x.io") == {"first_name": "First", "last_row_no": 1}
