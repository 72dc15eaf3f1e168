"""Bulk action records in Postgres, as the API sees them (always per account)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from bulkflow import sql
from schemas.bulk_action import ActionOptions, BulkActionView, Counts, Progress


class ActionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        *,
        account_id: str,
        entity: str,
        action: str,
        source: str,
        options: ActionOptions,
        total_rows: int | None,
    ) -> asyncpg.Record:
        return await self._pool.fetchrow(
            sql.postgres("bulk_actions_create"),
            uuid.uuid4(),
            account_id,
            entity,
            action,
            source,
            options.model_dump(mode="json"),
            total_rows,
        )

    async def seal(self, action_id: uuid.UUID, total_rows: int) -> None:
        await self._pool.execute(sql.postgres("bulk_actions_seal"), action_id, total_rows)

    async def fail(self, action_id: uuid.UUID, error: dict[str, Any], published: int) -> None:
        await self._pool.execute(sql.postgres("bulk_actions_fail"), action_id, error, published)

    async def get(self, account_id: str, action_id: uuid.UUID) -> asyncpg.Record | None:
        return await self._pool.fetchrow(sql.postgres("bulk_actions_get"), action_id, account_id)


def view(record: asyncpg.Record) -> BulkActionView:
    total = record["total_rows"]
    processed = record["processed_rows"]
    return BulkActionView(
        id=record["id"],
        status=record["status"],
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
        ),
        error=record["error"],
        created_at=record["created_at"],
        started_at=record["started_at"],
        finished_at=record["finished_at"],
    )
