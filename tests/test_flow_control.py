"""Per-account row limits through the whole pipeline: fair, ordered, adjustable live."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from bulkflow.settings import Settings
from tests.conftest import ADMIN_TOKEN, TEST_WRITE_BURST, TEST_WRITES_PER_MINUTE
from tests.support import PATIENCE, Tenant, new_tenant, submit_json, wait_for_status

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
    b_seconds = time.monotonic() - started
    assert done_b["counts"]["succeeded"] == 1_000
    assert b_seconds < PATIENCE / 4  # generous: "within seconds", on a shared machine

    # A stays within 600 rows/min plus one bucket (500 rows: one chunk) meanwhile.
    samples = []
    while time.monotonic() - started < 15:
        samples.append((time.monotonic() - started, (await get(api, a, first["id"]))))
        await asyncio.sleep(0.5)
    processed = [s["progress"]["processed"] for _, s in samples]
    assert max(processed) <= 600 + 500
    throttled = samples[-1][1]
    assert throttled["status"] == "throttled"
    assert throttled["resumes_at"] is not None
    assert throttled["progress"]["eta_seconds"] > 300  # 4,500 rows at 10 rows/s
    assert (await get(api, a, second["id"]))["progress"]["processed"] == 0
    print(
        f"\nB completed in {b_seconds:.1f}s; A processed {max(processed)} rows "
        f"in its first {samples[-1][0]:.0f}s (limit 600/min)"
    )

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
    assert (
        await pool.fetchval("SELECT count(*) FROM chunk_backlog WHERE account_id = $1", a.id) == 0
    )


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
