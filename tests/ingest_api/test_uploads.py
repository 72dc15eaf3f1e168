"""How an upload ends when it breaks off or its process dies (real Postgres).

The end-of-upload marker travels like a chunk: here it is taken from where
the scheduler would publish it and applied by the real batch processor.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bulkflow import constants, sql
from ingest_api.actions import ActionStore, Created, Idempotency
from ingest_api.uploads import UploadLease, UploadLost, UploadReaper, end_upload
from schemas.bulk_action import ActionOptions
from schemas.messages import Chunk
from stream_agents.batch import BatchProcessor
from stream_agents.errors import RetriesExhausted
from tests.stream_agents.support import KeptLetters, chunk
from tests.support import account_id, eventually

pytestmark = pytest.mark.anyio

BROKE_OFF = {"code": "invalid_csv", "message": "the file broke off"}


async def create(store: ActionStore, account: str, key: Idempotency) -> Created:
    return await store.create(
        account_id=account,
        entity="contact",
        action="upsert",
        source="csv",
        options=ActionOptions(),
        total_rows=None,
        columns=["email"],
        idempotency=key,
    )


async def marker(pool: asyncpg.Pool, action_id: uuid.UUID) -> Chunk:
    """The end-of-upload marker queued for the scheduler."""
    stored = await pool.fetchval(
        "SELECT chunk FROM scheduled_chunks WHERE action_id = $1 AND chunk_no = $2",
        action_id,
        constants.END_OF_UPLOAD_CHUNK_NO,
    )
    assert stored is not None, "no end-of-upload marker was queued"
    end = Chunk.from_bytes(stored)
    assert end.ends_upload
    assert end.rows == []
    return end


async def state(pool: asyncpg.Pool, action_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, total_rows, processed_rows, failed, error, upload_lease_until"
        " FROM bulk_actions WHERE id = $1",
        action_id,
    )
    return dict(row)


async def test_an_upload_that_broke_off_ends_behind_its_published_rows(
    pool: asyncpg.Pool,
) -> None:
    store, account = ActionStore(pool), account_id()
    key = Idempotency("import-42", b"request")
    first = await create(store, account, key)
    action_id = first.record["id"]
    rows = [{"email": f"r{i}@x.io"} for i in range(3)]
    processor = BatchProcessor(pool, KeptLetters())
    await processor.process([chunk(str(action_id), account, 0, 1, rows)])

    assert await end_upload(pool, action_id, BROKE_OFF)
    broke_off = await state(pool, action_id)
    # Rows published before may still be on their way: not terminal yet.
    assert (broke_off["status"], broke_off["total_rows"]) == ("running", None)
    assert broke_off["error"] == BROKE_OFF
    retried = await create(store, account, key)  # the key is released: it uploads again
    assert not retried.replayed
    assert retried.record["id"] != action_id

    await processor.process([await marker(pool, action_id)])
    ended = await state(pool, action_id)
    assert (ended["status"], ended["total_rows"], ended["processed_rows"]) == ("failed", 3, 3)
    assert not await end_upload(pool, action_id, BROKE_OFF)  # ended once


async def test_an_upload_ends_even_when_its_markers_batch_fails_for_good(
    pool: asyncpg.Pool,
) -> None:
    """The marker has no rows to replay: its upload ends, not waiting for a replay."""
    store, account = ActionStore(pool), account_id()
    action_id = (await create(store, account, Idempotency("import-9", b"r"))).record["id"]
    processor = BatchProcessor(pool, KeptLetters())
    await processor.process([chunk(str(action_id), account, 0, 1, [{"email": "m@x.io"}])])
    assert await end_upload(pool, action_id, BROKE_OFF)

    await processor.fail([await marker(pool, action_id)], RetriesExhausted(3, TimeoutError()))
    ended = await state(pool, action_id)
    assert (ended["status"], ended["total_rows"], ended["processed_rows"]) == ("failed", 1, 1)


async def test_an_upload_cancelled_before_it_broke_off_stays_cancelled(
    pool: asyncpg.Pool,
) -> None:
    store, account = ActionStore(pool), account_id()
    key = Idempotency(f"import-{uuid.uuid4()}", b"request")
    action_id = (await create(store, account, key)).record["id"]
    assert await pool.fetchval(sql.postgres("bulk_actions_cancel"), action_id, account)
    assert await end_upload(pool, action_id, BROKE_OFF)
    await BatchProcessor(pool, KeptLetters()).process([await marker(pool, action_id)])

    cancelled = await state(pool, action_id)
    assert (cancelled["status"], cancelled["total_rows"], cancelled["error"]) == (
        "cancelled",
        0,
        None,
    )
    assert (await create(store, account, key)).replayed  # the cancel is the answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def lapse(pool: asyncpg.Pool, action_id: uuid.UUID) -> None:
    """The lease runs out, as if its process had stopped renewing it."""
    await pool.execute(
        "UPDATE bulk_actions SET upload_lease_until = now() - interval '1 second' WHERE id = $1",
        action_id,
    )


async def test_a_lapsed_lease_is_reaped_and_its_holder_stops(pool: asyncpg.Pool) -> None:
    store, account = ActionStore(pool), account_id()
    key = Idempotency("import-7", b"request")
    action_id = (await create(store, account, key)).record["id"]
    clock = Clock()
    reaper = UploadReaper(pool, clock=clock)
    await lapse(pool, action_id)  # its process died: no renewal comes
    await reaper.reap_once()  # seen lapsed: ended only if it stays so
    assert (await state(pool, action_id))["error"] is None
    clock.now += constants.UPLOAD_LEASE
    assert await reaper.reap_once() >= 1
    reaped = await state(pool, action_id)
    assert reaped["error"]["code"] == "upload_interrupted"
    assert reaped["upload_lease_until"] is None
    assert not await store.seal(action_id, 10)  # the reaper's end stands
    await marker(pool, action_id)
    assert not (await create(store, account, key)).replayed  # the key is released

    # A holder that had only stalled learns at its next renewal, and stops.
    async with UploadLease.held(pool, action_id) as lease:
        with pytest.raises(UploadLost):
            await _until_lost(lease)


async def test_a_lease_renewed_after_an_outage_is_not_reaped(pool: asyncpg.Pool) -> None:
    """Postgres was away longer than the lease: the living holder renews it in time."""
    store, account = ActionStore(pool), account_id()
    action_id = (await create(store, account, Idempotency("import-8", b"r"))).record["id"]
    clock = Clock()
    reaper = UploadReaper(pool, clock=clock)
    await lapse(pool, action_id)
    await reaper.reap_once()  # seen lapsed
    async with UploadLease.held(pool, action_id):
        await _until_renewed(pool, action_id)
        clock.now += constants.UPLOAD_LEASE
        assert await reaper.reap_once() == 0
    assert (await state(pool, action_id))["error"] is None


async def _until_renewed(pool: asyncpg.Pool, action_id: uuid.UUID) -> None:
    async def renewed() -> bool:
        lease = (await state(pool, action_id))["upload_lease_until"]
        return lease is not None and lease > datetime.now(UTC)

    await eventually(renewed, "the lease renewed")


async def _until_lost(lease: UploadLease) -> None:
    """The holder learns at its next renewal (every UPLOAD_LEASE_RENEW seconds)."""

    async def checked() -> bool:
        lease.check()  # raises UploadLost once the renewal found the lease taken
        return False

    await eventually(checked, "the holder learn that its lease was lost")
