"""The backlog drainer against the real Postgres and Redis, with a stand-in applier."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest

from bulkflow import sql
from bulkflow.database import connect_pool
from bulkflow.rate_limit import TokenBucket
from bulkflow.settings import Settings
from schemas.messages import Chunk
from stream_agents.applier import Applier
from stream_agents.backlog import BacklogDrainer
from stream_agents.throttle import Throttle
from tests.stream_agents.test_batch import new_action

pytestmark = pytest.mark.anyio


class RecordingApplier:
    def __init__(self) -> None:
        self.applied: list[Chunk] = []

    async def apply(self, chunks: Sequence[Chunk]) -> None:
        self.applied.extend(chunks)


async def test_an_account_that_fails_to_drain_does_not_stall_the_next(
    isolated: Settings, limiter: TokenBucket
) -> None:
    async with connect_pool(isolated, size=4) as pool:
        bad_action, good_action = (
            await new_action(pool, "acc_a", 1),
            await new_action(pool, "acc_b", 1),
        )
        good = Chunk(good_action, "acc_b", "contact", "upsert", 0, 1, [{"email": "b@x.io"}])
        # acc_a's head chunk cannot be read (say, written by a newer version): it fails.
        await pool.execute(
            sql.postgres("chunk_backlog_add"),
            ["acc_a", "acc_b"],
            [uuid.UUID(bad_action), uuid.UUID(good_action)],
            [0, 0],
            [b"not a chunk", good.to_bytes()],
            [datetime.now(UTC)] * 2,
        )
        applier = RecordingApplier()
        drainer = BacklogDrainer(pool, Throttle(pool, limiter, 10_000), cast(Applier, applier))
        assert await drainer.drain_once()
        assert applier.applied == [good]
        waiting = await pool.fetch("SELECT account_id FROM chunk_backlog ORDER BY account_id")
        assert [r["account_id"] for r in waiting] == ["acc_a"]  # kept, to try again
