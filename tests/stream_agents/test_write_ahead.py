"""A batch writing ahead of the one before it, against the real Postgres.

The batch before is held before its commit (a trigger on its ledger insert
waits for an advisory lock the test holds) while the next one inserts its new
rows; then it commits, fails an attempt, fails for good, or the action is
cancelled meanwhile. Every row must end as if the two had been applied one
after the other (stream_agents/turn.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import pytest

from bulkflow import metrics
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from schemas.messages import Chunk, OutcomeBatch, RowProblem
from stream_agents.applier import Applier
from stream_agents.batch import BatchProcessor
from stream_agents.outcomes import OutcomePublisher
from stream_agents.turn import Turn
from tests.stream_agents.support import KeptLetters, chunk
from tests.support import account_id as account
from tests.support import eventually

pytestmark = pytest.mark.anyio

LOCK = 7_401_139


class KeptOutcomes:
    """Stands in for the outcome topic."""

    def __init__(self) -> None:
        self.batches: list[OutcomeBatch] = []

    async def publish(self, batches: Sequence[OutcomeBatch], *, drained: bool = False) -> None:
        self.batches += batches


@pytest.fixture
async def wide_pool(database: Settings) -> AsyncIterator[asyncpg.Pool]:
    """Two batches in flight hold up to four connections (the agents' default is 8)."""
    async with connect_pool(database, size=6) as pool:
        yield pool


@pytest.fixture
async def holder(database: Settings) -> AsyncIterator[asyncpg.Connection]:
    """Holds the lock the first chunk's ledger insert waits for, and drops the trigger after."""
    conn = await asyncpg.connect(database.postgres_dsn.get_secret_value())
    try:
        yield conn
    finally:
        await conn.execute(
            "DROP TRIGGER IF EXISTS hold_first ON chunk_ledger;"
            " DROP FUNCTION IF EXISTS hold_first(); DROP SEQUENCE IF EXISTS first_attempts"
        )
        await conn.close()


async def hold_first_commit(holder: asyncpg.Connection, action_id: str, fail: str) -> None:
    """Chunk 0's ledger insert waits for the test; then fails ``fail``: 'never',
    'once' (a serialization failure) or 'always' (until recorded as dead-lettered)."""
    await holder.execute(
        f"""
        CREATE SEQUENCE first_attempts;
        CREATE FUNCTION hold_first() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.action_id = '{action_id}' AND NEW.chunk_no = 0 AND NOT NEW.dead_lettered THEN
                PERFORM pg_advisory_xact_lock_shared({LOCK});
                IF '{fail}' = 'always' OR ('{fail}' = 'once' AND nextval('first_attempts') = 1)
                THEN
                    RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
                END IF;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER hold_first BEFORE INSERT ON chunk_ledger
            FOR EACH ROW EXECUTE FUNCTION hold_first();
        """
    )
    await holder.execute("SELECT pg_advisory_lock($1)", LOCK)


async def new_action(pool: asyncpg.Pool, acct: str, total: int) -> str:
    action_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO bulk_actions (id, account_id, entity, action, source, total_rows)"
        " VALUES ($1, $2, 'contact', 'create', 'json', $3)",
        action_id,
        acct,
        total,
    )
    return action_id


def two_batches(action_id: str, acct: str) -> tuple[list[Chunk], list[Chunk]]:
    """Rows 1-4 and 5-8 of an import; row 6 repeats row 2's email."""
    rows: list[dict[str, Any]] = [{"email": f"c{n}@example.com"} for n in range(8)]
    rows[5]["email"] = "C1@example.com"
    chunks = [
        chunk(action_id, acct, n, 1 + 2 * n, rows[2 * n : 2 * n + 2], "create") for n in range(4)
    ]
    return chunks[:2], chunks[2:]


def plain_inserts() -> float:
    return float(metrics.INSERTS.labels("plain")._value.get())


def restarts() -> float:
    return float(metrics.BATCH_RESTARTS._value.get())


@dataclass(frozen=True)
class Ran:
    action_id: str
    first: list[OutcomeBatch]  # the outcomes each batch published
    second: list[OutcomeBatch]
    restarts: float  # batches that started again behind the one before


async def run_two(
    pool: asyncpg.Pool, holder: asyncpg.Connection, fail: str, meanwhile: str | None = None
) -> Ran:
    """An import's rows 1-4 as a batch held before its commit (``fail``: see
    hold_first_commit), then rows 5-8 behind it once it is prepared; once those
    have inserted their new rows, run ``meanwhile`` (SQL, ``{action_id}`` filled
    in) and release the held commit."""
    acct = account()
    action_id = await new_action(pool, acct, 8)
    first, second = two_batches(action_id, acct)
    await hold_first_commit(holder, action_id, fail)
    restarted = restarts()
    processor = BatchProcessor(pool, KeptLetters(), attempts=3, interval=0)
    published = KeptOutcomes(), KeptOutcomes()
    appliers = [Applier(processor, cast(OutcomePublisher, p), interval=0) for p in published]
    before, turn = Turn(), Turn()
    plain = plain_inserts()
    applying = asyncio.ensure_future(appliers[0].apply(first, turn=before))

    async def prepared() -> bool:
        return before.prepared.is_set()

    await eventually(prepared, "the first batch prepared")
    behind = asyncio.ensure_future(appliers[1].apply(second, turn=turn, after=before))

    async def written_ahead() -> bool:
        return plain_inserts() - plain == 2  # the first batch's plain INSERT, then the second's

    await eventually(written_ahead, "the second batch's new rows inserted")
    assert not applying.done()
    assert not behind.done()
    if meanwhile is not None:
        await holder.execute(meanwhile.format(action_id=action_id))
    await holder.execute("SELECT pg_advisory_unlock($1)", LOCK)
    await asyncio.gather(applying, behind)
    return Ran(action_id, published[0].batches, published[1].batches, restarts() - restarted)


async def stored(pool: asyncpg.Pool, action_id: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT last_row_no FROM contacts WHERE last_action_id = $1 ORDER BY 1", action_id
    )
    return [r[0] for r in rows]


async def counted(pool: asyncpg.Pool, action_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, processed_rows, succeeded, skipped FROM bulk_actions WHERE id = $1",
        action_id,
    )
    return dict(row)


async def test_a_batch_inserts_its_new_rows_ahead_and_the_rest_once_the_one_before_commits(
    wide_pool: asyncpg.Pool, holder: asyncpg.Connection
) -> None:
    ran = await run_two(wide_pool, holder, fail="never")
    assert [o.codes for o in ran.first + ran.second] == ["cc", "cc", "cs", "cc"]
    assert ran.second[0].problems[1] == RowProblem("duplicate", "same email as row 2", 2)
    assert ran.restarts == 0
    assert await stored(wide_pool, ran.action_id) == [1, 2, 3, 4, 5, 7, 8]
    # The second batch's ledger rows committed after the first's.
    ledger = await wide_pool.fetch(
        "SELECT chunk_no, xmin::text::bigint AS tx FROM chunk_ledger WHERE action_id = $1"
        " ORDER BY chunk_no",
        ran.action_id,
    )
    first_tx, second_tx = {r["tx"] for r in ledger[:2]}, {r["tx"] for r in ledger[2:]}
    assert len(first_tx) == len(second_tx) == 1
    assert first_tx != second_tx
    assert await counted(wide_pool, ran.action_id) == {
        "status": "completed",
        "processed_rows": 8,
        "succeeded": 7,
        "skipped": 1,
    }


async def test_a_batch_ahead_of_one_that_fails_an_attempt_starts_again_once_it_commits(
    wide_pool: asyncpg.Pool, holder: asyncpg.Connection
) -> None:
    ran = await run_two(wide_pool, holder, fail="once")
    assert ran.restarts == 1
    assert [o.codes for o in ran.first + ran.second] == ["cc", "cc", "cs", "cc"]
    assert await stored(wide_pool, ran.action_id) == [1, 2, 3, 4, 5, 7, 8]
    assert await counted(wide_pool, ran.action_id) == {
        "status": "completed",
        "processed_rows": 8,
        "succeeded": 7,
        "skipped": 1,
    }


async def test_a_batch_ahead_of_one_that_fails_for_good_is_held_behind_its_dead_letter(
    wide_pool: asyncpg.Pool, holder: asyncpg.Connection
) -> None:
    """The rows the second batch had inserted ahead are rolled back: it is held
    behind the first batch's dead-lettered chunk, for a replay in file order."""
    ran = await run_two(wide_pool, holder, fail="always")
    assert [o.codes for o in ran.first] == ["ff", "ff"]
    assert ran.first[0].problems[0].reason == "retries_exhausted"
    assert [o.codes for o in ran.second] == ["ff", "ff"]
    assert {p.reason for o in ran.second for p in o.problems.values()} == {"held_for_replay"}
    assert await stored(wide_pool, ran.action_id) == []


async def test_a_batch_ahead_of_a_cancel_skips_its_rows(
    wide_pool: asyncpg.Pool, holder: asyncpg.Connection
) -> None:
    """The action is cancelled after the second batch read its state: what it had
    read no longer holds once the first commits, so it starts again and skips."""
    # As `bulkflow` cancels an action: its status, which the agents read.
    cancel = "UPDATE bulk_actions SET status = 'cancelled' WHERE id = '{action_id}'"
    ran = await run_two(wide_pool, holder, fail="never", meanwhile=cancel)
    assert ran.restarts == 1
    assert [o.codes for o in ran.first] == ["cc", "cc"]
    assert [o.codes for o in ran.second] == ["ss", "ss"]
    assert {p.reason for o in ran.second for p in o.problems.values()} == {"cancelled"}
    assert await stored(wide_pool, ran.action_id) == [1, 2, 3, 4]
