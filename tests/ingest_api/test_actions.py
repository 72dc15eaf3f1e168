"""The action store against the real Postgres: how an upload that broke off ends."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from bulkflow import sql
from ingest_api.actions import ActionStore, Created, Idempotency
from schemas.bulk_action import ActionOptions
from tests.support import account_id

pytestmark = pytest.mark.anyio

BROKE_OFF = {"code": "upload_interrupted", "message": "the client went away"}


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


async def test_a_failed_upload_releases_its_idempotency_key(pool: asyncpg.Pool) -> None:
    store, account = ActionStore(pool), account_id()
    key = Idempotency("import-42", b"request")
    first = await create(store, account, key)
    await store.fail(first.record["id"], BROKE_OFF, published=500)

    failed = await store.get(account, first.record["id"])
    assert failed is not None
    assert (failed["status"], failed["total_rows"]) == ("failed", 500)
    retried = await create(store, account, key)  # the same request again: it uploads again
    assert not retried.replayed
    assert retried.record["id"] != first.record["id"]
    assert (await create(store, account, key)).record["id"] == retried.record["id"]


async def test_an_upload_cancelled_before_it_broke_off_stays_cancelled(
    pool: asyncpg.Pool,
) -> None:
    store, account = ActionStore(pool), account_id()
    key = Idempotency(f"import-{uuid.uuid4()}", b"request")
    created = await create(store, account, key)
    action_id = created.record["id"]
    assert await pool.fetchval(sql.postgres("bulk_actions_cancel"), action_id, account)
    await store.fail(action_id, BROKE_OFF, published=1_000)

    cancelled = await store.get(account, action_id)
    assert cancelled is not None
    assert (cancelled["status"], cancelled["total_rows"]) == ("cancelled", 1_000)
    assert cancelled["error"] is None
    assert (await create(store, account, key)).replayed  # the cancel is the answer
