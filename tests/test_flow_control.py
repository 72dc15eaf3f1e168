"""Per-account row limits through the whole pipeline: fair, ordered, adjustable live."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from bulkflow.settings import Settings
from tests.conftest import ADMIN_TOKEN, TEST_WRITE_BURST, TEST_WRITES_PER_MINUTE
from tests.support import (
    PATIENCE,
    Tenant,
    eventually,
    new_tenant,
    submit_json,
    wait_for_stats,
    wait_for_status,
)

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def same_partition(pool: asyncpg.Pool, partitions: int) -> tuple[Tenant, Tenant]:
    """Two accounts whose chunks share a partition (aiokafka's murmur2, as the producer)."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    seen: dict[int, Tenant] = {}
    while True:
        tenant = await new_tenant(pool)
        partition = partitioner(tenant.id.encode(), every, every)
        if partition in seen:
            return seen[partition], tenant
        seen[partition] = tenant


def rows(n: int, name: str) -> list[dict[str, Any]]:
    return [{"email": f"r{i}@example.com", "first_name": name} for i in range(n)]


async def get(api: httpx.AsyncClient, tenant: Tenant, action_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/bulk-actions/{action_id}", headers=tenant.headers)
    body: dict[str, Any] = response.json()
    return body


async def test_a_throttled_account_never_stalls_another(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings
) -> None:
    a, b = await same_partition(pool, database.topic_partitions)
    limited = await api.put(
        f"/v1/admin/accounts/{a.id}/limits", json={"rows_per_minute": 600}, headers=ADMIN
    )
    assert limited.status_code == 200, limited.text

    started = time.monotonic()
    first = await submit_json(api, a, rows(5_000, "first"))
    second = await submit_json(api, a, rows(10, "second"))  # must not overtake the first
    other = await submit_json(api, b, rows(1_000, "b"))
    done_b = await wait_for_status(api, other["id"], b)
    assert done_b["counts"]["succeeded"] == 1_000
    # B went through while A, on the same partition, waits for its tokens.
    throttled = await wait_for_status(api, first["id"], a, "throttled")
    elapsed = time.monotonic() - started

    # A stays within its allowance: a bucket of 500 rows (one chunk) plus 600
    # rows/min for as long as it has run. A slower machine only allows more.
    assert throttled["progress"]["processed"] <= 500 + 600 * elapsed / 60
    assert throttled["resumes_at"] is not None
    assert throttled["progress"]["eta_seconds"] > 60  # thousands of rows at 10 rows/s
    assert (await get(api, a, second["id"]))["progress"]["processed"] == 0

    # Lifting the limit takes effect without a restart; A completes exactly, in order.
    lifted = await api.put(
        f"/v1/admin/accounts/{a.id}/limits", json={"rows_per_minute": None}, headers=ADMIN
    )
    assert lifted.status_code == 200
    done_first = await wait_for_status(api, first["id"], a)
    done_second = await wait_for_status(api, second["id"], a)
    assert done_first["counts"] == {"succeeded": 5_000, "failed": 0, "skipped": 0}
    assert done_second["counts"] == {"succeeded": 10, "failed": 0, "skipped": 0}
    assert done_second["finished_at"] >= done_first["finished_at"]
    names = await pool.fetch(
        "SELECT first_name, count(*) FROM contacts WHERE account_id = $1 GROUP BY 1", a.id
    )
    assert dict(names) == {"second": 10, "first": 4_990}

    async def backlog_empty() -> bool:
        # A chunk leaves the backlog just after its transaction commits.
        query = "SELECT count(*) = 0 FROM chunk_backlog WHERE account_id = $1"
        return bool(await pool.fetchval(query, a.id))

    await eventually(backlog_empty, "the backlog emptied")


async def test_admin_api_needs_the_admin_token(api: httpx.AsyncClient, tenant: Tenant) -> None:
    path = f"/v1/admin/accounts/{tenant.id}/limits"
    assert (await api.put(path, json={"rows_per_minute": 5})).status_code == 401
    as_tenant = await api.put(path, json={"rows_per_minute": 5}, headers=tenant.headers)
    assert as_tenant.status_code == 401
    bad = await api.put(path, json={"rows_per_minute": 0}, headers=ADMIN)
    assert bad.status_code == 422
    missing = await api.put(
        "/v1/admin/accounts/acc_nobody/limits", json={"rows_per_minute": 5}, headers=ADMIN
    )
    assert missing.status_code == 404


async def test_write_requests_are_limited_per_account(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    body = {"entity": "contact", "action": "upsert", "rows": [{"email": "w@example.com"}]}
    responses = []
    for _ in range(TEST_WRITE_BURST + 10):  # the bucket refills 1/s meanwhile
        response = await api.post("/v1/bulk-actions", json=body, headers=tenant.headers)
        responses.append(response)
        if response.status_code == 429:
            break
    statuses = [r.status_code for r in responses]
    assert statuses[-1] == 429, statuses
    assert statuses.count(202) >= TEST_WRITE_BURST
    first, refused = responses[0], responses[-1]
    assert first.headers["ratelimit-limit"] == str(TEST_WRITES_PER_MINUTE)
    assert int(first.headers["ratelimit-remaining"]) == TEST_WRITE_BURST - 1
    assert int(first.headers["ratelimit-reset"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"

    reads = await api.get("/v1/bulk-actions", headers=tenant.headers)  # a budget of its own
    assert reads.status_code == 200
    assert int(reads.headers["ratelimit-remaining"]) > 0
    other = await new_tenant(pool)
    assert (await api.post("/v1/bulk-actions", json=body, headers=other.headers)).status_code == 202


async def limit(api: httpx.AsyncClient, tenant: Tenant, rows_per_minute: int | None) -> None:
    response = await api.put(
        f"/v1/admin/accounts/{tenant.id}/limits",
        json={"rows_per_minute": rows_per_minute},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text


async def control(
    api: httpx.AsyncClient, tenant: Tenant, action_id: str, verb: str
) -> httpx.Response:
    return await api.post(f"/v1/bulk-actions/{action_id}/{verb}", headers=tenant.headers)


async def contacts_of(pool: asyncpg.Pool, tenant: Tenant) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE account_id = $1", tenant.id
    )
    return count


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_scheduled_action_starts_when_due_and_can_be_moved(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    due = await submit_json(api, tenant, rows(700, "due"), scheduled_for=iso_in(3600))
    assert due["status"] == "scheduled"
    past = await submit_json(api, tenant, rows(3, "past"), scheduled_for=iso_in(-60))
    assert past["status"] != "scheduled"
    assert (await wait_for_status(api, past["id"], tenant))["counts"]["succeeded"] == 3

    assert (await get(api, tenant, due["id"]))["status"] == "scheduled"
    assert await contacts_of(pool, tenant) == 3  # nothing of the scheduled one yet
    moved = await api.patch(
        f"/v1/bulk-actions/{due['id']}",
        json={"scheduled_for": iso_in(1)},
        headers=tenant.headers,
    )
    assert moved.status_code == 200, moved.text
    done = await wait_for_status(api, due["id"], tenant)
    assert done["counts"]["succeeded"] == 700
    # It starts once due, never before (how soon after is the scheduler's poll).
    assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(
        done["scheduled_for"]
    )

    too_late = await api.patch(
        f"/v1/bulk-actions/{due['id']}",
        json={"scheduled_for": iso_in(60)},
        headers=tenant.headers,
    )
    assert too_late.status_code == 409
    assert too_late.json()["error"]["details"]["status"] == "completed"


async def test_cancel_before_start_applies_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    action = await submit_json(api, tenant, rows(600, "x"), scheduled_for=iso_in(3600))
    cancelled = await control(api, tenant, action["id"], "cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    done = await wait_for_status(api, action["id"], tenant, "cancelled")
    while done["progress"]["processed"] < 600:
        await asyncio.sleep(0.2)
        done = await get(api, tenant, action["id"])
    assert done["counts"] == {"succeeded": 0, "failed": 0, "skipped": 600}
    assert await contacts_of(pool, tenant) == 0
    stats = await wait_for_stats(api, action["id"], tenant, 600)
    assert stats["top_skip_reasons"] == [{"reason": "cancelled", "rows": 600}]
    again = await control(api, tenant, action["id"], "cancel")
    assert again.status_code == 409


async def test_cancel_while_running_skips_the_rest(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    await limit(api, tenant, 600)  # one chunk now, the rest waits
    action = await submit_json(api, tenant, rows(2_000, "x"))
    await wait_for_status(api, action["id"], tenant, "throttled")
    assert (await control(api, tenant, action["id"], "cancel")).status_code == 200
    deadline = time.monotonic() + PATIENCE
    done = await get(api, tenant, action["id"])
    while done["progress"]["processed"] < 2_000:
        assert time.monotonic() < deadline, done
        await asyncio.sleep(0.2)
        done = await get(api, tenant, action["id"])
    assert done["status"] == "cancelled"
    assert done["counts"] == {"succeeded": 500, "failed": 0, "skipped": 1_500}
    assert await contacts_of(pool, tenant) == 500


async def test_pause_holds_the_action_not_other_accounts(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings
) -> None:
    a, b = await same_partition(pool, database.topic_partitions)
    await limit(api, a, 600)
    action = await submit_json(api, a, rows(1_500, "a"))
    await wait_for_status(api, action["id"], a, "throttled")
    paused = await control(api, a, action["id"], "pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    await limit(api, a, None)  # tokens galore, yet paused holds
    other = await submit_json(api, b, rows(100, "b"))
    assert (await wait_for_status(api, other["id"], b))["counts"]["succeeded"] == 100
    held = await get(api, a, action["id"])
    assert (held["status"], held["progress"]["processed"]) == ("paused", 500)
    assert (await control(api, a, action["id"], "pause")).status_code == 409

    assert (await control(api, a, action["id"], "resume")).status_code == 200
    done = await wait_for_status(api, action["id"], a)
    assert done["counts"] == {"succeeded": 1_500, "failed": 0, "skipped": 0}
