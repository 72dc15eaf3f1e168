"""Which chunks of a batch may be applied now, and which must wait in the backlog.

Chunks are admitted in order while their account's token bucket grants their
rows. At the first refusal, or at a chunk of a paused action, the account is
blocked for the rest of the batch, and an account that already has chunks in
the backlog is blocked from the start: its chunks queue behind the waiting
ones, so its rows keep their order, while other accounts' chunks in the same
batch go straight through. A cancelled action's chunks only record skips, so
they need no tokens and wait for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bulkflow import metrics, sql
from bulkflow.rate_limit import Grant, Rate, TokenBucket, row_rate
from schemas.messages import Chunk

_ACCOUNT_LABELS = metrics.AccountLabels()


@dataclass(frozen=True)
class Deferred:
    chunk: Chunk
    not_before: datetime
    refused: bool  # by the bucket (not_before is when tokens return), or queued behind


@dataclass(frozen=True)
class Admission:
    now: list[Chunk]
    later: list[Deferred]


class Throttle:
    def __init__(self, pool: asyncpg.Pool, buckets: TokenBucket, rows_per_minute: int) -> None:
        self._pool = pool
        self._buckets = buckets
        self._default = rows_per_minute

    def allowance(self, override: int | None) -> Rate:
        return row_rate(override or self._default)

    async def take(self, chunk: Chunk, allowance: Rate) -> Grant:
        return await self._buckets.take(chunk.account_id, len(chunk.rows), allowance)

    async def admit(self, chunks: list[Chunk]) -> Admission:
        accounts = sorted({c.account_id for c in chunks})
        rows = await self._pool.fetch(sql.postgres("flow_accounts"), accounts)
        statuses = {
            r["id"]: r["status"]
            for r in await self._pool.fetch(
                sql.postgres("bulk_actions_statuses"), sorted({c.action_id for c in chunks})
            )
        }
        allowance = {r["account_id"]: self.allowance(r["rows_per_minute"]) for r in rows}
        blocked = {r["account_id"] for r in rows if r["backlogged"]}
        granted = await self._grant_whole(chunks, statuses, blocked, allowance)
        now = datetime.now(UTC)
        admitted: list[Chunk] = []
        later: list[Deferred] = []
        for chunk in chunks:
            status = statuses.get(chunk.action_id)
            if status == "cancelled":
                admitted.append(chunk)
                continue
            if status == "paused":
                blocked.add(chunk.account_id)
            if chunk.account_id in blocked:
                later.append(Deferred(chunk, now, refused=False))
                continue
            if chunk.account_id in granted:
                admitted.append(chunk)
                continue
            grant = await self.take(chunk, allowance[chunk.account_id])
            if grant.granted:
                admitted.append(chunk)
            else:
                blocked.add(chunk.account_id)
                resumes = now + timedelta(seconds=grant.retry_after)
                later.append(Deferred(chunk, resumes, refused=True))
        return Admission(admitted, later)

    async def _grant_whole(
        self,
        chunks: list[Chunk],
        statuses: dict[str, str],
        blocked: set[str],
        allowance: dict[str, Rate],
    ) -> set[str]:
        """Accounts whose every admissible chunk the bucket grants in one go.

        The common case (no limit reached) then costs one Redis call per
        account instead of one per chunk; a refused take takes nothing, and
        the chunks are then asked for one by one.
        """
        wanted: dict[str, int] = {}
        stopped = set(blocked)
        for chunk in chunks:
            status = statuses.get(chunk.action_id)
            if status == "paused":
                stopped.add(chunk.account_id)
            if status != "cancelled" and chunk.account_id not in stopped:
                wanted[chunk.account_id] = wanted.get(chunk.account_id, 0) + len(chunk.rows)
        granted = set()
        for account, rows in wanted.items():
            if (await self._buckets.take(account, rows, allowance[account])).granted:
                granted.add(account)
        return granted

    async def defer(self, deferred: list[Deferred]) -> None:
        """Put chunks in the backlog and show their actions as throttled."""
        if not deferred:
            return
        chunks = [d.chunk for d in deferred]
        for d in deferred:  # per chunk deferred, not per row
            reason = "rate_limited" if d.refused else "queued"
            metrics.THROTTLE_DEFERRALS.labels(_ACCOUNT_LABELS(d.chunk.account_id), reason).inc()
        resumes: dict[str, datetime | None] = {}
        for d in deferred:
            if resumes.get(d.chunk.action_id) is None:
                resumes[d.chunk.action_id] = d.not_before if d.refused else None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                sql.postgres("chunk_backlog_add"),
                [c.account_id for c in chunks],
                [c.action_id for c in chunks],
                [c.chunk_no for c in chunks],
                [c.to_bytes() for c in chunks],
                [d.not_before for d in deferred],
            )
            await conn.execute(
                sql.postgres("bulk_actions_throttle"), list(resumes), list(resumes.values())
            )
