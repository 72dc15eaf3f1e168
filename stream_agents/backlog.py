"""Drains the backlog: each account's waiting chunks, in order, as tokens return.

Runs beside the Kafka agent in every agents process. An account is drained by
one process at a time (a Postgres advisory lock on the account), oldest chunk
first, so an account's rows keep their order across replicas. A chunk leaves
the backlog only after it was applied (and recorded in the ledger), so a crash
in between replays it without applying it twice.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import asyncpg

from bulkflow import constants, sql
from bulkflow.background import background, poll_forever
from bulkflow.database import advisory_lock, ping
from bulkflow.rate_limit import Rate
from schemas.messages import Chunk
from stream_agents.applier import Applier
from stream_agents.throttle import Throttle

log = logging.getLogger(__name__)


class BacklogDrainer:
    def __init__(self, pool: asyncpg.Pool, throttle: Throttle, applier: Applier) -> None:
        self._pool = pool
        self._throttle = throttle
        self._applier = applier

    def running(self) -> AbstractAsyncContextManager[None]:
        return background(self._run(), name="backlog-drainer")

    async def _run(self) -> None:
        await poll_forever(
            "draining the backlog",
            self.drain_once,
            idle=constants.BACKLOG_POLL,
            probe=lambda: ping(self._pool),
        )

    async def drain_once(self) -> bool:
        """One pass over the accounts whose head chunk is due; whether any chunk was applied."""
        applied = False
        for head in await self._pool.fetch(sql.postgres("chunk_backlog_heads")):
            allowance = self._throttle.allowance(head["rows_per_minute"])
            key = head["account_id"]
            async with advisory_lock(self._pool, constants.BACKLOG_LOCK_SPACE, key) as mine:
                if not mine:
                    continue  # another process drains this account
                try:
                    applied |= await self._drain_account(key, allowance)
                except Exception:  # the next accounts still drain: one must not stall them
                    log.exception("draining account %s failed; trying again next pass", key)
        return applied

    async def _drain_account(self, account_id: str, allowance: Rate) -> bool:
        waiting = await self._pool.fetch(
            sql.postgres("chunk_backlog_next"), account_id, constants.BACKLOG_CHUNKS_PER_ROUND
        )
        ready: list[tuple[int, Chunk]] = []
        for row in waiting:
            chunk = Chunk.from_bytes(row["chunk"])
            if row["status"] == "paused":
                break  # the account's later chunks wait behind it
            if row["status"] == "cancelled":  # only skips to record: no tokens
                ready.append((row["seq"], chunk))
                continue
            grant = await self._throttle.take(chunk, allowance)
            if not grant.granted:
                resumes = datetime.now(UTC) + timedelta(seconds=grant.retry_after)
                await self._postpone(row["seq"], chunk.action_id, resumes)
                break
            ready.append((row["seq"], chunk))
        if not ready:
            return False
        await self._applier.apply([chunk for _, chunk in ready])
        await self._pool.execute(sql.postgres("chunk_backlog_remove"), [seq for seq, _ in ready])
        return True

    async def _postpone(self, seq: int, action_id: str, resumes: datetime) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.postgres("chunk_backlog_postpone"), seq, resumes)
            await conn.execute(sql.postgres("bulk_actions_throttle"), [action_id], [resumes])
