"""Bulk action records in Postgres, as the API sees them (always per account)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from bulkflow import constants, sql
from ingest_api.errors import IdempotencyConflict
from ingest_api.scheduled import ScheduledWriter
from schemas.bulk_action import ActionOptions, BulkActionView, Counts, ListFilters, Progress


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and a digest of the request it was first used with."""

    key: str
    request_hash: bytes


@dataclass(frozen=True)
class Created:
    record: asyncpg.Record
    replayed: bool  # an earlier request with the same Idempotency-Key created it


class _KeyTaken(Exception):
    """Rolls back the new action: the idempotency key belongs to an earlier one."""


class ActionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def create(
        self,
        *,
        account_id: str,
        entity: str,
        action: str,
        source: str,
        options: ActionOptions,
        total_rows: int | None,
        columns: list[str],
        idempotency: Idempotency | None = None,
        scheduled_for: datetime | None = None,
        callback_url: str | None = None,
    ) -> Created:
        """Record a new action: 'scheduled' when due later, else 'queued'."""
        later = scheduled_for is not None and scheduled_for > datetime.now(UTC)
        status = "scheduled" if later else "queued"
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                record = await conn.fetchrow(
                    sql.postgres("bulk_actions_create"),
                    uuid.uuid4(),
                    account_id,
                    entity,
                    action,
                    source,
                    options.model_dump(mode="json"),
                    total_rows,
                    columns,
                    status,
                    scheduled_for,
                    constants.UPLOAD_LEASE,
                    callback_url,
                )
                if idempotency is not None:
                    claimed = await conn.fetchval(
                        sql.postgres("idempotency_keys_claim"),
                        account_id,
                        idempotency.key,
                        idempotency.request_hash,
                        record["id"],
                    )
                    if claimed is None:
                        raise _KeyTaken
            return Created(record, replayed=False)
        except _KeyTaken:
            assert idempotency is not None
            earlier = await self.replay(account_id, idempotency)
            assert earlier is not None  # keys are never deleted while their action exists
            return earlier

    async def replay(self, account_id: str, idempotency: Idempotency) -> Created | None:
        """The action an earlier request with this key created, if any."""
        row = await self._pool.fetchrow(
            sql.postgres("idempotency_keys_get"), account_id, idempotency.key
        )
        if row is None:
            return None
        if row["request_hash"] != idempotency.request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was used with a different request",
                {"action_id": str(row["action_id"])},
            )
        record = await self.get(account_id, row["action_id"])
        return None if record is None else Created(record, replayed=True)

    def scheduled_writer(self) -> ScheduledWriter:
        return ScheduledWriter(self._pool)

    async def seal(self, action_id: uuid.UUID, total_rows: int) -> bool:
        """The upload ended with ``total_rows``; False if a reaper had ended it already."""
        sealed = await self._pool.fetchval(sql.postgres("bulk_actions_seal"), action_id, total_rows)
        return sealed is not None

    async def get(self, account_id: str, action_id: uuid.UUID) -> asyncpg.Record | None:
        return await self._pool.fetchrow(sql.postgres("bulk_actions_get"), action_id, account_id)

    async def page(
        self, account_id: str, filters: ListFilters, after: tuple[datetime, uuid.UUID] | None
    ) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._pool.fetch(
            sql.postgres("bulk_actions_list"),
            account_id,
            filters.status,
            filters.entity,
            filters.action,
            filters.created_after,
            filters.created_before,
            after[0] if after else None,
            after[1] if after else None,
            filters.limit,
        )
        return rows

    async def summary(self, account_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(sql.postgres("bulk_actions_summary"), account_id)
        return {r["status"]: r["actions"] for r in rows}


def view(record: asyncpg.Record, default_rows_per_minute: int) -> BulkActionView:
    """The API's picture of an action; the ETA allows for the account's row limit."""
    total = record["total_rows"]
    processed = record["processed_rows"]
    status = record["status"]
    started, finished = record["started_at"], record["finished_at"]
    now = datetime.now(UTC)
    elapsed = ((finished or now) - started).total_seconds() if started else 0
    rate = processed / elapsed if elapsed > 0 else None
    limit = record.get("account_rows_per_minute") or default_rows_per_minute
    eta = None
    if total is not None and status in ("queued", "running", "throttled"):
        pace = min(rate or float("inf"), limit / 60)
        waiting = (record["resumes_at"] - now).total_seconds() if record["resumes_at"] else 0
        eta = round(max(waiting, 0) + (total - processed) / pace, 1)
    return BulkActionView(
        id=record["id"],
        status=status,
        entity=record["entity"],
        action=record["action"],
        source=record["source"],
        options=record["options"],
        total_rows=total,
        counts=Counts(
            succeeded=record["succeeded"], failed=record["failed"], skipped=record["skipped"]
        ),
        progress=Progress(
            processed=processed,
            total=total,
            percent=round(100 * processed / total, 1) if total else (100.0 if total == 0 else None),
            rows_per_second=round(rate, 1) if rate is not None else None,
            eta_seconds=eta,
        ),
        error=record["error"],
        resumes_at=record["resumes_at"] if status == "throttled" else None,
        scheduled_for=record["scheduled_for"],
        created_at=record["created_at"],
        started_at=started,
        finished_at=finished,
        callback_url=record["callback_url"],
    )
