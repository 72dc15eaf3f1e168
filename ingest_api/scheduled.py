"""Where a scheduled action's chunks wait until due: Postgres, written in batches."""

from __future__ import annotations

import asyncpg

from bulkflow import constants, sql
from schemas.messages import Chunk


class ScheduledWriter:
    """The same surface as the Kafka ``Publisher``: ``send``, ``flush``, ``published_rows``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: list[tuple[Chunk, bytes]] = []
        self.published_rows = 0

    async def send(self, chunk: Chunk, encoded: bytes | None = None) -> None:
        self._pending.append((chunk, chunk.to_bytes() if encoded is None else encoded))
        self.published_rows += len(chunk.rows)
        if len(self._pending) >= constants.SCHEDULED_WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        chunks, self._pending = self._pending, []
        await self._pool.execute(
            sql.postgres("scheduled_chunks_add"),
            [c.action_id for c, _ in chunks],
            [c.chunk_no for c, _ in chunks],
            [encoded for _, encoded in chunks],
        )
