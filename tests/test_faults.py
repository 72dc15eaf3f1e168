"""Faults injected into the real services: outcomes exact, nothing lost, nothing doubled."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from bulkflow.settings import Settings
from stream_agents import dead_letters
from tests.support import (
    Tenant,
    eventually,
    submit_json,
    wait_for_stats,
    wait_for_status,
)

pytestmark = pytest.mark.anyio

#: Backends the locker blocks: the agents' apply statement, waiting for the lock.
BLOCKED_BY = "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"


def rows(n: int) -> list[dict[str, Any]]:
    return [{"email": f"f{i}@example.com", "first_name": "F"} for i in range(n)]


async def contacts(pool: asyncpg.Pool, tenant: Tenant) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE account_id = $1", tenant.id
    )
    return count


async def test_a_killed_connection_is_retried(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with pool.acquire() as locker:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        try:
            action = await submit_json(api, tenant, rows(1_000))
            # Watched from another connection: inside a transaction, pg_stat_activity
            # is a snapshot that never changes.
            locker_pid = locker.get_server_pid()
            pid = await eventually(
                lambda: pool.fetchval(BLOCKED_BY, locker_pid), "the apply waiting"
            )
            assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await lock.rollback()
    done = await wait_for_status(api, action["id"], tenant)
    assert done["counts"] == {"succeeded": 1_000, "failed": 0, "skipped": 0}
    assert await contacts(pool, tenant) == 1_000
    stats = await wait_for_stats(api, action["id"], tenant, 1_000)
    assert stats["operations"] == {"created": 1_000}


async def test_a_row_violating_a_constraint_fails_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    await pool.execute(
        "ALTER TABLE contacts ADD CONSTRAINT test_forbidden_title"
        " CHECK (job_title IS DISTINCT FROM 'FORBIDDEN')"
    )
    try:
        batch = rows(5)
        batch[2]["job_title"] = "FORBIDDEN"
        done = await wait_for_status(api, (await submit_json(api, tenant, batch))["id"], tenant)
    finally:
        await pool.execute("ALTER TABLE contacts DROP CONSTRAINT test_forbidden_title")
    assert done["counts"] == {"succeeded": 4, "failed": 1, "skipped": 0}
    assert await contacts(pool, tenant) == 4
    await wait_for_stats(api, done["id"], tenant, 5)
    logs = await api.get(
        f"/v1/bulk-actions/{done['id']}/logs", params={"outcome": "failed"}, headers=tenant.headers
    )
    [failed] = logs.json()["data"]
    assert (failed["row_no"], failed["reason"]) == (3, "check_violation")
    assert "test_forbidden_title" in failed["message"]
    assert failed["message"].count("Failing row contains") == 1  # Postgres' DETAIL, once


async def test_retries_exhausted_dead_letter_and_replay(
    api: httpx.AsyncClient, pool: asyncpg.Pool, database: Settings, tenant: Tenant
) -> None:
    """Statements time out while a lock is held: 3 attempts, then dead letters; replay heals."""
    before = len(await _chunk_letters(database))
    async with pool.acquire() as locker:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        try:
            action = await submit_json(api, tenant, rows(600))
            failed = await wait_for_status(api, action["id"], tenant)
        finally:
            await lock.rollback()
    assert failed["counts"] == {"succeeded": 0, "failed": 600, "skipped": 0}
    letters = await eventually(lambda: _new_letters(database, before), "the dead letters")
    assert {letter.chunk.action_id for letter in letters} == {action["id"]}
    stats = await wait_for_stats(api, action["id"], tenant, 600)
    reasons = {r["reason"]: r["rows"] for r in stats["top_failure_reasons"]}
    # The first chunk's retries ran out; the second, if it came in a later
    # batch, was held behind it so that the replay keeps file order.
    assert sum(reasons.values()) == 600
    assert reasons["retries_exhausted"] >= 500
    assert set(reasons) <= {"retries_exhausted", "held_for_replay"}

    done = await dead_letters.replay(database, pool)
    assert done.replayed >= len(letters)
    assert done.replayed + done.applied_meanwhile == before + len(letters)
    assert await dead_letters.list_pending(database) == []

    async def healed() -> dict[str, Any] | None:
        state = (await api.get(f"/v1/bulk-actions/{action['id']}", headers=tenant.headers)).json()
        return state if state["counts"]["succeeded"] == 600 else None

    done = await eventually(healed, "the replayed rows applied")
    assert done["counts"] == {"succeeded": 600, "failed": 0, "skipped": 0}
    assert done["status"] == "completed"
    assert await contacts(pool, tenant) == 600

    async def recorded() -> dict[str, Any] | None:
        stats = await wait_for_stats(api, action["id"], tenant, 600)
        return stats if stats["counts"]["succeeded"] == 600 else None

    assert (await eventually(recorded, "ClickHouse updated"))["recorded_rows"] == 600


async def _new_letters(settings: Settings, before: int) -> list[dead_letters.DeadLetter]:
    return (await _chunk_letters(settings))[before:]


async def _chunk_letters(settings: Settings) -> list[dead_letters.DeadLetter]:
    """Pending letters of chunks: an undecodable one another test left is listed,
    never replayed."""
    return [x for x in await dead_letters.list_pending(settings) if x.chunk is not None]


# A Postgres outage mid-action is tests/test_chaos.py's postgres scenario: it stops
# a private Postgres for 30 s instead of the instance every local session shares.
