"""Every row accounted for: uploads that break off, wide rows, and the limits of messages.

Against the session's server and the real services. A terminal status must
mean that every row has its outcome, in Postgres and in ClickHouse alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import murmur2

from bulkflow import constants
from bulkflow.settings import Settings
from bulkflow.topics import topic_config
from stream_agents import dead_letters
from tests.support import (
    PATIENCE,
    POLL,
    Tenant,
    eventually,
    new_tenant,
    produce_raw,
    submit_json,
    wait_for_stats,
    wait_for_status,
)

pytestmark = pytest.mark.anyio

TERMINAL = ("completed", "failed", "cancelled")


def partition(settings: Settings, account: str) -> int:
    """The chunk topic partition of an account (aiokafka's default partitioner)."""
    return (murmur2(account.encode()) & 0x7FFFFFFF) % settings.topic_partitions


async def neighbour(pool: asyncpg.Pool, settings: Settings, of: Tenant) -> Tenant:
    """Another account whose chunks share a partition with ``of``'s."""
    for _ in range(200):
        other = await new_tenant(pool)
        if partition(settings, other.id) == partition(settings, of.id):
            return other
    raise AssertionError("no account found on the same partition")


def consistent(action: dict[str, Any]) -> bool:
    """A terminal action has every row's outcome, and only then."""
    counts = action["counts"]
    processed = action["progress"]["processed"]
    return action["status"] not in TERMINAL or processed == action["total_rows"] == sum(
        counts.values()
    )


async def until_terminal(api: httpx.AsyncClient, action_id: str, tenant: Tenant) -> dict[str, Any]:
    """Poll the action until it ends, checking at every look that its status is honest."""
    deadline = time.monotonic() + PATIENCE
    while True:
        response = await api.get(f"/v1/bulk-actions/{action_id}", headers=tenant.headers)
        state: dict[str, Any] = response.json()
        assert consistent(state), state
        if state["status"] in TERMINAL:
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(POLL)


async def test_a_file_rejected_midway_ends_once_its_queued_rows_have_outcomes(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    rows = "".join(f"mid{i}@example.com,Mid\n" for i in range(1, 701))
    body = f"email,first_name\n{rows}" + 'broken@example.com,"never closed\n' + "x\n" * 50
    response = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert"},
        content=body.encode(),
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unclosed_quote"
    action_id = error["details"]["action_id"]  # the answer names the action it created

    state = await until_terminal(api, action_id, tenant)
    assert state["status"] == "failed"
    assert state["error"]["code"] == "unclosed_quote"
    # The reader queues whole chunks of 500 rows: the first went out before the
    # broken record; the rows after it in the second chunk never did.
    assert state["total_rows"] == 500
    assert state["counts"] == {"succeeded": 500, "failed": 0, "skipped": 0}
    stats = await wait_for_stats(api, action_id, tenant, 500)
    assert stats["recorded_rows"] == 500
    assert stats["counts"] == state["counts"]


async def test_wide_rows_go_in_byte_sized_chunks_and_spare_the_partition(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings, tenant: Tenant
) -> None:
    config = await topic_config(database, database.topic(constants.CHUNKS_TOPIC))
    assert config["max.message.bytes"] == str(constants.MAX_MESSAGE_BYTES)
    other = await neighbour(pool, database, tenant)
    wide = [{"email": f"wide{i}@example.com", "notes": f"{i}" + "w" * 100_000} for i in range(100)]
    big = await submit_json(api, tenant, wide)
    small = await submit_json(api, other, [{"email": "next@example.com"}])

    done = await wait_for_status(api, big["id"], tenant)
    assert done["counts"] == {"succeeded": 100, "failed": 0, "skipped": 0}
    chunks = await pool.fetchval(
        "SELECT count(*) FROM chunk_ledger WHERE action_id = $1", big["id"]
    )
    assert chunks >= 100 * 100_000 // constants.CHUNK_TARGET_BYTES  # cut by bytes, not by rows
    stored = await pool.fetchval(
        "SELECT length(custom_fields->>'notes') FROM contacts"
        " WHERE account_id = $1 AND email = 'wide7@example.com'",
        tenant.id,
    )
    assert stored == 100_001
    assert (await wait_for_stats(api, big["id"], tenant, 100))["recorded_rows"] == 100
    neighbour_done = await wait_for_status(api, small["id"], other)
    assert neighbour_done["counts"] == {"succeeded": 1, "failed": 0, "skipped": 0}


async def test_a_row_too_large_to_travel_is_refused_before_anything_is_queued(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    huge = {"email": "huge@example.com", "notes": "h" * (constants.MAX_ROW_BYTES + 1)}
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "upsert", "rows": [{"email": "ok@x.io"}, huge]},
        headers=tenant.headers,
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "row_too_large"
    assert error["details"] == {"limit_bytes": constants.MAX_ROW_BYTES, "rows": [1]}
    listed = await api.get("/v1/bulk-actions", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_an_undecodable_chunk_is_dead_lettered_as_received(
    api: httpx.AsyncClient, database: Settings, tenant: Tenant
) -> None:
    garbage = b'{"action_id": "not a chunk", ' + uuid.uuid4().hex.encode()
    await produce_raw(database, constants.CHUNKS_TOPIC, tenant.id.encode(), garbage)

    async def kept() -> list[dead_letters.DeadLetter]:
        return [
            letter for letter in await dead_letters.list_pending(database) if letter.raw == garbage
        ]

    [letter] = await eventually(kept, "the undecodable chunk dead-lettered")
    assert (letter.kind, letter.topic) == ("undecodable", database.topic(constants.CHUNKS_TOPIC))
    # The account's partition was not held up by it.
    after = await submit_json(api, tenant, [{"email": "after-garbage@example.com"}])
    done = await wait_for_status(api, after["id"], tenant)
    assert done["counts"] == {"succeeded": 1, "failed": 0, "skipped": 0}
