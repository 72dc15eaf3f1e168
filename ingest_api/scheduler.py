"""Fires scheduled actions: their stored chunks go to Kafka when due.

Runs in every agents process; an advisory lock per action makes one process
fire it. Chunks stay in Postgres until they are on Kafka, so a crash midway
fires the action again, and the chunk ledger keeps the repeats from being
applied twice. An action can fall due (or be cancelled) while its upload still
streams: chunks stored after a pass read them go out on the next pass.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import AbstractAsyncContextManager

import asyncpg

from bulkflow import constants, sql
from bulkflow.background import background, poll_forever
from bulkflow.database import advisory_lock, ping
from ingest_api.publisher import ChunkProducer
from schemas.messages import Chunk

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, producer: ChunkProducer) -> None:
        self._pool = pool
        self._producer = producer

    def running(self) -> AbstractAsyncContextManager[None]:
        return background(self._run(), name="scheduler")

    async def _run(self) -> None:
        await poll_forever(
            "firing scheduled actions",
            self.fire_due,
            idle=constants.SCHEDULER_POLL,
            probe=lambda: ping(self._pool),
        )

    async def fire_due(self) -> int:
        """Publish the chunks of every due action; return how many actions fired."""
        fired = 0
        for row in await self._pool.fetch(sql.postgres("scheduled_due"), 10):
            key = str(row["id"])
            async with advisory_lock(self._pool, constants.SCHEDULER_LOCK_SPACE, key) as mine:
                if not mine:
                    continue  # another process fires it
                # Under the lock, again: another process may have just fired it.
                if await self._pool.fetchval(sql.postgres("scheduled_pending"), row["id"]):
                    await self._fire(row["id"])
                    fired += 1
        return fired

    async def _fire(self, action_id: uuid.UUID) -> None:
        await self._pool.execute(sql.postgres("scheduled_fire"), action_id)
        publisher = self._producer.publisher()
        after = -1
        while rows := await self._pool.fetch(
            sql.postgres("scheduled_chunks_of"), action_id, after, constants.SCHEDULER_PAGE
        ):
            for row in rows:
                chunk = Chunk.from_bytes(row["chunk"])
                await publisher.send(chunk)
                after = chunk.chunk_no
        await publisher.flush()
        await self._pool.execute(sql.postgres("scheduled_fired"), action_id, after)
        log.info("fired scheduled action %s (%d rows)", action_id, publisher.published_rows)
