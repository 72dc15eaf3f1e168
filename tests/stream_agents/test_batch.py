"""The batch logic against the real Postgres, without Kafka: process_batch as a function."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from bulkflow import metrics
from bulkflow.settings import Settings
from schemas.column_reader import ReadRows
from schemas.messages import Chunk, RowProblem
from stream_agents.batch import BatchProcessor, _InsertFirst, _Part
from tests.stream_agents.support import KeptLetters, chunk
from tests.support import account_id as account
from tests.support import eventually

pytestmark = pytest.mark.anyio


async def new_action(pool: asyncpg.Pool, acct: str, total: int, action: str = "upsert") -> str:
    action_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO bulk_actions (id, account_id, entity, action, source, total_rows)"
        " VALUES ($1, $2, 'contact', $3, 'json', $4)",
        action_id,
        acct,
        action,
        total,
    )
    return action_id


async def counts(pool: asyncpg.Pool, action_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, processed_rows, succeeded, failed, skipped FROM bulk_actions WHERE id = $1",
        action_id,
    )
    return dict(row)


async def test_redelivered_chunk_replays_its_outcomes(pool: asyncpg.Pool) -> None:
    acct = account()
    action_id = await new_action(pool, acct, 3)
    first = chunk(
        action_id,
        acct,
        0,
        1,
        [
            {"email": "a@example.com", "first_name": "A"},
            {"email": "broken"},
            {"email": "b@example.com"},
        ],
    )
    processor = BatchProcessor(pool, KeptLetters())
    [original] = await processor.process([first])
    snapshot = await pool.fetch(
        "SELECT email, first_name, updated_at FROM contacts WHERE account_id = $1 ORDER BY email",
        acct,
    )
    [replayed] = await processor.process([first])
    [twice_in_one_batch] = await processor.process([first, first])

    assert original.codes == "cfc"
    assert original == replayed == twice_in_one_batch
    assert await counts(pool, action_id) == {
        "status": "completed",
        "processed_rows": 3,
        "succeeded": 2,
        "failed": 1,
        "skipped": 0,
    }
    assert snapshot == await pool.fetch(
        "SELECT email, first_name, updated_at FROM contacts WHERE account_id = $1 ORDER BY email",
        acct,
    )


async def test_in_file_duplicates_are_skipped_across_batches(pool: asyncpg.Pool) -> None:
    acct = account()
    action_id = await new_action(pool, acct, 4)
    processor = BatchProcessor(pool, KeptLetters())
    [one] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                0,
                1,
                [
                    {"email": "dup@example.com", "first_name": "First"},
                    {"email": " DUP@example.com ", "first_name": "Second"},
                ],
            )
        ]
    )
    [two] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                1,
                3,
                [
                    {"email": "Dup@Example.com", "first_name": "Third"},
                    {"email": "other@example.com"},
                ],
            )
        ]
    )
    assert one.codes == "cs"
    assert two.codes == "sc"
    assert one.problems[1] == RowProblem("duplicate", "same email as row 1", 1)
    assert two.problems[0] == RowProblem("duplicate", "same email as row 1", 1)
    name = await pool.fetchval(
        "SELECT first_name FROM contacts"
        " WHERE account_id = $1 AND lower(email) = 'dup@example.com'",
        acct,
    )
    assert name == "First"


async def test_a_key_of_an_earlier_chunk_in_the_same_statement_is_a_duplicate(
    pool: asyncpg.Pool,
) -> None:
    """A key first seen in an earlier chunk of the same statement: the second
    chunk's repeat is skipped, although no key repeats within that chunk."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    created = await new_action(pool, acct, 3)
    emails = [{"email": f"{name}@example.com"} for name in "abc"]
    await processor.process([chunk(created, acct, 0, 1, emails)])
    action_id = await new_action(pool, acct, 4, "update")
    one, two = await processor.process(
        [
            chunk(action_id, acct, 0, 1, [emails[0], {**emails[1], "first_name": "One"}], "update"),
            chunk(
                action_id,
                acct,
                1,
                3,
                [emails[2], {"email": "B@example.com", "first_name": "Two"}],
                "update",
            ),
        ]
    )
    assert (one.codes, two.codes) == ("nu", "ns")  # n: nothing to change
    assert two.problems[1] == RowProblem("duplicate", "same email as row 2", 2)
    name = await pool.fetchval(
        "SELECT first_name FROM contacts WHERE account_id = $1 AND email = 'b@example.com'", acct
    )
    assert name == "One"


def inserts(kind: str) -> float:
    """Insert fast-path statements of this kind so far (bulkflow_insert_statements)."""
    return metrics.INSERTS.labels(kind)._value.get()


async def test_an_import_inserts_keys_its_action_never_had_without_on_conflict(
    pool: asyncpg.Pool,
) -> None:
    """From its first chunk, an action's new keys go through the plain INSERT, and a
    key of an earlier batch (an in-file duplicate) to the apply statement."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    action_id = await new_action(pool, acct, 5, "create")
    plain, refused = inserts("plain"), inserts("plain_refused")
    [first] = await processor.process(
        [chunk(action_id, acct, 0, 1, [{"email": "a@example.com"}, {"email": "b@example.com"}])]
    )
    [second] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                1,
                3,
                [
                    {"email": "c@example.com"},
                    {"email": "B@example.com"},
                    {"email": "d@example.com"},
                ],
            )
        ]
    )
    assert (first.codes, second.codes) == ("cc", "csc")
    assert second.problems[1] == RowProblem("duplicate", "same email as row 2", 2)
    assert (inserts("plain") - plain, inserts("plain_refused") - refused) == (2, 0)
    stored = await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", acct)
    assert stored == 4


async def test_a_key_the_table_had_before_the_action_redoes_the_round_with_on_conflict(
    pool: asyncpg.Pool,
) -> None:
    """The plain INSERT meets a contact another action created: its savepoint is
    rolled back, the round goes the refusable way, and so do the action's later
    rounds. Every row gets the outcome it would have had."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    earlier = await new_action(pool, acct, 1)
    await processor.process([chunk(earlier, acct, 0, 1, [{"email": "b@example.com"}])])
    action_id = await new_action(pool, acct, 5)
    plain, refused = inserts("plain"), inserts("plain_refused")
    [first] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                0,
                1,
                [
                    {"email": "a@example.com"},
                    {"email": "B@example.com", "first_name": "Bea"},
                    {"email": "c@example.com"},
                ],
            )
        ]
    )
    [second] = await processor.process(
        [chunk(action_id, acct, 1, 4, [{"email": "d@example.com"}, {"email": "A@example.com"}])]
    )
    assert (first.codes, second.codes) == ("cuc", "cs")
    assert second.problems[1] == RowProblem("duplicate", "same email as row 1", 1)
    assert (inserts("plain") - plain, inserts("plain_refused") - refused) == (0, 1)
    names = await pool.fetch(
        "SELECT email, first_name, last_action_id::text AS action FROM contacts"
        " WHERE account_id = $1 ORDER BY email",
        acct,
    )
    assert [tuple(r) for r in names] == [
        ("a@example.com", None, action_id),
        ("b@example.com", "Bea", action_id),
        ("c@example.com", None, action_id),
        ("d@example.com", None, action_id),
    ]


async def test_a_row_the_plain_insert_leaves_out_redoes_the_round_with_on_conflict(
    pool: asyncpg.Pool,
) -> None:
    """The plain INSERT returns nothing: when its command tag counts fewer rows than
    were sent (here one names a contact that does not exist), its savepoint is
    rolled back and the refusable INSERT and the apply statement decide the rows."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 1)
    await processor.process([chunk(seed, acct, 0, 1, [{"email": "ada@example.com"}])])
    action_id = await new_action(pool, acct, 3, "create")
    plain, refused = inserts("plain"), inserts("plain_refused")
    deals = [
        {"external_id": "D-1", "contact_email": "ada@example.com"},
        {"external_id": "D-2", "contact_email": "nobody@example.com"},
        {"external_id": "D-3"},
    ]
    [out] = await processor.process([Chunk(action_id, acct, "opportunity", "create", 0, 1, deals)])
    assert out.codes == "cfc"
    assert out.problems[1].reason == "contact_not_found"
    assert (inserts("plain") - plain, inserts("plain_refused") - refused) == (0, 1)
    stored = await pool.fetch(
        "SELECT external_id, last_row_no FROM opportunities WHERE account_id = $1"
        " ORDER BY external_id",
        acct,
    )
    assert [tuple(r) for r in stored] == [("D-1", 1), ("D-3", 3)]


async def test_parts_prepared_ahead_keep_their_outcomes_when_an_earlier_part_is_refused(
    pool: asyncpg.Pool,
) -> None:
    """A batch's later parts are split on the worker thread while Postgres applies the
    earlier ones. When the second part's plain INSERT meets a contact another action
    created, the third part was split already, perhaps as plain rows: whichever
    statement writes them, every row keeps the outcome the file's order gives it."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 1)
    await processor.process([chunk(seed, acct, 0, 1, [{"email": "seed@example.com"}])])
    action_id = await new_action(pool, acct, 20)
    emails = [f"c{n}@example.com" for n in range(20)]
    emails[10] = "SEED@example.com"  # chunk 5, the second part: taken before the action
    emails[17] = "c0@example.com"  # chunk 8, the third part: row 1's, of the first part
    emails[19] = "C12@example.com"  # chunk 9: row 13's, of the refused second part
    rows: list[dict[str, Any]] = [{"email": e} for e in emails]
    rows[10]["first_name"] = "Sid"  # an update, written by the apply statement
    chunks = [chunk(action_id, acct, n, 1 + 2 * n, rows[2 * n : 2 * n + 2]) for n in range(10)]
    refused = inserts("plain_refused")
    outcomes = await processor.process(chunks)
    assert [o.codes for o in outcomes] == ["cc"] * 5 + ["uc", "cc", "cc", "cs", "cs"]
    assert outcomes[8].problems[1] == RowProblem("duplicate", "same email as row 1", 1)
    assert outcomes[9].problems[1] == RowProblem("duplicate", "same email as row 13", 13)
    assert inserts("plain_refused") - refused == 1
    stored = await pool.fetch(
        "SELECT lower(email) AS email, last_row_no FROM contacts"
        " WHERE account_id = $1 AND last_action_id = $2",
        acct,
        action_id,
    )
    written = {r["email"]: r["last_row_no"] for r in stored}
    assert len(written) == 18
    assert (written["seed@example.com"], written["c0@example.com"]) == (11, 1)
    assert written["c12@example.com"] == 13


async def test_a_batchs_later_parts_commit_in_a_second_transaction_in_file_order(
    pool: asyncpg.Pool,
) -> None:
    """A batch of four parts: the last two go through a second connection, their
    new rows inserted while the first transaction applies the first two parts.
    Rows of the later parts that repeat an earlier part's email or external id,
    and one taken before the action, get the outcomes the file's order gives
    them; each half's chunks are recorded by its own transaction."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 1)
    await processor.process([chunk(seed, acct, 0, 1, [{"email": "taken@example.com"}])])
    action_id = await new_action(pool, acct, 32, "create")
    rows: list[dict[str, Any]] = [
        {"email": f"c{n}@example.com", "external_id": f"X-{n}"} for n in range(32)
    ]
    rows[16]["email"] = "C0@example.com"  # chunk 8, the third part: row 1's email
    rows[17]["external_id"] = "X-1"  # chunk 8: row 2's external id
    rows[28]["email"] = "TAKEN@example.com"  # chunk 14, the fourth part
    chunks = [
        chunk(action_id, acct, n, 1 + 2 * n, rows[2 * n : 2 * n + 2], "create") for n in range(16)
    ]
    plain, refused = inserts("plain"), inserts("plain_refused")
    outcomes = await processor.process(chunks)
    assert [o.codes for o in outcomes] == ["cc"] * 8 + ["sf"] + ["cc"] * 5 + ["sc", "cc"]
    assert outcomes[8].problems[0] == RowProblem("duplicate", "same email as row 1", 1)
    assert outcomes[8].problems[1].reason == "external_id_taken"
    assert outcomes[14].problems[0].reason == "already_exists"
    assert (inserts("plain") - plain, inserts("plain_refused") - refused) == (3, 1)
    stored = await pool.fetch(
        "SELECT last_row_no FROM contacts WHERE last_action_id = $1", action_id
    )
    assert sorted(r[0] for r in stored) == [n for n in range(1, 33) if n not in (17, 18, 29)]
    # The ledger's rows are written outside savepoints: by the transaction itself.
    ledger = await pool.fetch(
        "SELECT chunk_no, xmin::text AS tx FROM chunk_ledger WHERE action_id = $1", action_id
    )
    by_chunk = {r["chunk_no"]: r["tx"] for r in ledger}
    first, second = {by_chunk[n] for n in range(8)}, {by_chunk[n] for n in range(8, 16)}
    assert len(first) == len(second) == 1
    assert first != second
    assert await counts(pool, action_id) == {
        "status": "completed",
        "processed_rows": 32,
        "succeeded": 29,
        "failed": 1,
        "skipped": 2,
    }


async def test_a_later_halfs_repeat_of_a_contact_the_earlier_half_updated_is_a_duplicate(
    pool: asyncpg.Pool, database: Settings
) -> None:
    """An upsert whose earlier half updates contacts that existed before the action,
    and whose later half repeats one of them: the repeat is a duplicate, and the
    contact keeps the first row's values, as when one transaction applies the
    batch. The apply statement decides a repeat from the contact it reads, so the
    later half writes it only once the earlier half has committed.

    The earlier half is held before its commit (a trigger on its ledger insert
    waits for a lock the test holds) until the later half has settled."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 16)
    existing = [{"email": f"c{n}@example.com"} for n in range(16)]
    await processor.process([chunk(seed, acct, 0, 1, existing)])
    action_id = await new_action(pool, acct, 32)
    # The earlier half updates the 16 contacts (so the action's later rows skip
    # the insert statements and go straight to the apply statement); row 21, in
    # chunk 10 of the later half, repeats row 1's.
    rows: list[dict[str, Any]] = [
        {"email": f"c{n}@example.com", "job_title": "First"} for n in range(32)
    ]
    rows[20] = {"email": "C0@example.com", "job_title": "Repeat"}
    chunks = [chunk(action_id, acct, n, 1 + 2 * n, rows[2 * n : 2 * n + 2]) for n in range(16)]
    lock = 7_401_137
    holder = await asyncpg.connect(database.postgres_dsn.get_secret_value())
    try:
        await holder.execute(
            f"""
            CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.action_id = '{action_id}' AND NEW.chunk_no = 0 THEN
                    PERFORM pg_advisory_xact_lock_shared({lock});
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER hold_commit BEFORE INSERT ON chunk_ledger
                FOR EACH ROW EXECUTE FUNCTION hold_commit();
            """
        )
        await holder.execute("SELECT pg_advisory_lock($1)", lock)
        applying = asyncio.ensure_future(processor.process(chunks))

        async def settled() -> bool:
            """The earlier half waits before its commit, and the later half has
            settled: idle in its transaction (waiting for that commit, as it
            should), or waiting for the earlier half's row lock (as it did)."""
            states = await holder.fetch(
                "SELECT state, wait_event FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            held = any(s["wait_event"] == "advisory" for s in states)
            later = any(
                s["state"] == "idle in transaction" or s["wait_event"] == "transactionid"
                for s in states
            )
            return applying.done() or (held and later)

        await eventually(settled, "the earlier half held before its commit")
        await holder.execute("SELECT pg_advisory_unlock($1)", lock)
        outcomes = await applying
    finally:
        await holder.execute(
            "DROP TRIGGER IF EXISTS hold_commit ON chunk_ledger;"
            " DROP FUNCTION IF EXISTS hold_commit()"
        )
        await holder.close()
    assert [o.codes for o in outcomes] == ["uu"] * 8 + ["cc"] * 2 + ["sc"] + ["cc"] * 5
    assert outcomes[10].problems[0] == RowProblem("duplicate", "same email as row 1", 1)
    title = await pool.fetchval(
        "SELECT job_title FROM contacts WHERE account_id = $1 AND email = 'c0@example.com'",
        acct,
    )
    assert title == "First"


async def test_a_second_transaction_that_fails_after_the_first_committed_is_retried(
    pool: asyncpg.Pool,
) -> None:
    """The later half's ledger insert fails (a serialization failure, raised once by
    a trigger) after the earlier half committed. The retry replays the earlier
    half from the ledger and applies the later half again: every row is stored and
    counted once."""
    acct = account()
    action_id = await new_action(pool, acct, 32, "create")
    await pool.execute(
        f"""
        -- Sequences: what they count is not rolled back with the failure.
        CREATE SEQUENCE ledger_inserts;
        CREATE SEQUENCE committed_before MINVALUE 0;
        CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.action_id = '{action_id}' AND NEW.chunk_no = 8
               AND nextval('ledger_inserts') = 1 THEN
                PERFORM setval('committed_before', (SELECT count(*) FROM chunk_ledger
                    WHERE action_id = NEW.action_id AND chunk_no < 8));
                RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER fail_once BEFORE INSERT ON chunk_ledger
            FOR EACH ROW EXECUTE FUNCTION fail_once();
        """
    )
    rows = [{"email": f"c{n}@example.com"} for n in range(32)]
    chunks = [
        chunk(action_id, acct, n, 1 + 2 * n, rows[2 * n : 2 * n + 2], "create") for n in range(16)
    ]
    try:
        outcomes = await BatchProcessor(pool, KeptLetters(), interval=0).process(chunks)
        tries = await pool.fetchval("SELECT last_value FROM ledger_inserts")
        committed = await pool.fetchval("SELECT last_value FROM committed_before")
    finally:
        await pool.execute(
            "DROP TRIGGER fail_once ON chunk_ledger; DROP FUNCTION fail_once();"
            " DROP SEQUENCE ledger_inserts, committed_before"
        )
    assert tries == 2  # chunk 8 was recorded at the second attempt
    assert committed == 8  # the later half records its chunks after the earlier commits
    assert [o.codes for o in outcomes] == ["cc"] * 16
    stored = await pool.fetchval(
        "SELECT count(*) FROM contacts WHERE last_action_id = $1", action_id
    )
    assert stored == 32
    assert await counts(pool, action_id) == {
        "status": "completed",
        "processed_rows": 32,
        "succeeded": 32,
        "failed": 0,
        "skipped": 0,
    }


async def test_an_account_with_two_actions_in_a_batch_applies_it_in_one_transaction(
    pool: asyncpg.Pool,
) -> None:
    """Two actions of one account may write one key in both halves of a batch: such
    a batch is not split, and the later action's row is applied after the earlier's."""
    acct = account()
    earlier = await new_action(pool, acct, 16)
    later = await new_action(pool, acct, 16)
    chunks = [
        chunk(action_id, acct, n, 1 + 2 * n, [{"email": f"e{n}@example.com", **fields}] * 2)
        for action_id, fields in ((earlier, {}), (later, {"job_title": "Manager"}))
        for n in range(8)
    ]
    outcomes = await BatchProcessor(pool, KeptLetters()).process(chunks)
    assert [o.codes for o in outcomes] == ["cs"] * 8 + ["us"] * 8
    written = await pool.fetch(
        "SELECT DISTINCT xmin::text FROM chunk_ledger WHERE action_id = ANY($1::uuid[])",
        [earlier, later],
    )
    assert len(written) == 1


async def test_external_ids_of_an_import_keep_file_order_on_the_plain_path(
    pool: asyncpg.Pool,
) -> None:
    """Rows with external ids take the plain INSERT too; a later row repeating an
    earlier row's external id (in its chunk or a later one) goes to the apply
    statement, which fails it: the earlier row keeps the value."""
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    action_id = await new_action(pool, acct, 5, "create")
    plain, refused = inserts("plain"), inserts("plain_refused")
    [first] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                0,
                1,
                [
                    {"email": "a@example.com", "external_id": "X-1"},
                    {"email": "b@example.com", "external_id": "X-2"},
                    {"email": "c@example.com", "external_id": "X-1"},
                ],
            )
        ]
    )
    [second] = await processor.process(
        [
            chunk(
                action_id,
                acct,
                1,
                4,
                [
                    {"email": "d@example.com", "external_id": "X-2"},
                    {"email": "e@example.com", "external_id": "X-3"},
                ],
            )
        ]
    )
    assert (first.codes, second.codes) == ("ccf", "fc")
    assert first.problems[2].reason == second.problems[0].reason == "external_id_taken"
    assert (inserts("plain") - plain, inserts("plain_refused") - refused) == (2, 0)
    owners = await pool.fetch(
        "SELECT external_id, email FROM contacts WHERE account_id = $1 ORDER BY external_id",
        acct,
    )
    assert [tuple(r) for r in owners] == [
        ("X-1", "a@example.com"),
        ("X-2", "b@example.com"),
        ("X-3", "e@example.com"),
    ]


async def test_two_actions_in_one_batch_apply_in_order(pool: asyncpg.Pool) -> None:
    acct = account()
    earlier = await new_action(pool, acct, 1)
    later = await new_action(pool, acct, 1)
    outcomes = await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(earlier, acct, 0, 1, [{"email": "x@example.com", "job_title": "Engineer"}]),
            chunk(later, acct, 0, 1, [{"email": "x@example.com", "job_title": "Manager"}]),
        ]
    )
    assert [o.codes for o in outcomes] == ["c", "u"]
    title = await pool.fetchval("SELECT job_title FROM contacts WHERE account_id = $1", acct)
    assert title == "Manager"


async def test_validation_failures_name_the_field(pool: asyncpg.Pool) -> None:
    acct = account()
    action_id = await new_action(pool, acct, 4)
    [out] = await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(
                action_id,
                acct,
                0,
                1,
                [
                    {"email": "ok@example.com", "lead_score": "101"},
                    {"email": "ok2@example.com", "status": "vip"},
                    {"first_name": "x" * 101, "email": "ok3@example.com"},
                    {"email": "ok4@example.com", "lead_score": "12", "Shoe Size": "44"},
                ],
            )
        ]
    )
    assert out.codes == "fffc"
    assert out.problems[0].reason == "invalid_lead_score"
    assert "lead_score" in out.problems[0].message
    assert out.problems[1].reason == "invalid_status"
    assert out.problems[2].reason == "invalid_first_name"
    stored = await pool.fetchrow(
        "SELECT lead_score, custom_fields FROM contacts WHERE account_id = $1", acct
    )
    assert stored["lead_score"] == 12
    assert stored["custom_fields"] == {"Shoe Size": "44"}


async def test_custom_fields_that_are_not_an_object_fail_their_row_only(
    pool: asyncpg.Pool,
) -> None:
    """Beside an unmapped column (which goes to custom_fields) too; other accounts unaffected."""
    acct, other = account(), account()
    action_id, other_action = await new_action(pool, acct, 3), await new_action(pool, other, 1)
    rows = [
        {"email": "a@example.com", "custom_fields": "size=44", "Shoe Size": "44"},
        {"email": "b@example.com", "custom_fields": ["44"]},
        {"email": "c@example.com", "custom_fields": {"size": "44"}, "Shoe Size": "45"},
    ]
    mine, theirs = await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(action_id, acct, 0, 1, rows),
            chunk(other_action, other, 0, 1, [{"email": "d@example.com"}]),
        ]
    )
    assert mine.codes == "ffc"
    assert [mine.problems[i].reason for i in (0, 1)] == ["invalid_custom_fields"] * 2
    assert mine.keys == ["a@example.com", "b@example.com", "c@example.com"]
    assert theirs.codes == "c"
    stored = await pool.fetchval("SELECT custom_fields FROM contacts WHERE account_id = $1", acct)
    assert stored == {"size": "44", "Shoe Size": "45"}


async def test_two_new_rows_with_one_external_id_in_one_statement(pool: asyncpg.Pool) -> None:
    """The second fails as taken, also when both go through the one-statement apply.

    That statement checks conflicts on one snapshot, so it cannot see its own
    first insert: the refused row is applied again, not the batch retried.
    """
    acct = account()
    existing = [{"email": f"old{i}@example.com"} for i in range(4)]
    await BatchProcessor(pool, KeptLetters()).process(
        [chunk(await new_action(pool, acct, 4), acct, 0, 1, existing)]
    )
    processor = BatchProcessor(pool, KeptLetters())
    action_id = await new_action(pool, acct, 6)
    # Mostly existing contacts: the action's next rows skip the insert fast path.
    await processor.process([chunk(action_id, acct, 0, 1, existing)])
    shared = [
        {"email": "new1@example.com", "external_id": "X-1"},
        {"email": "new2@example.com", "external_id": "X-1"},
    ]
    [out] = await processor.process([chunk(action_id, acct, 1, 5, shared)])
    assert out.codes == "cf"
    assert out.problems[1].reason == "external_id_taken"
    assert (await counts(pool, action_id))["status"] == "completed"


async def test_actions_matching_on_different_fields_keep_their_order(pool: asyncpg.Pool) -> None:
    """One batch: the later action's write to a contact wins, whatever each matches on."""
    acct = account()
    seed = [{"email": "e@example.com", "external_id": "X-1", "first_name": "seed"}]
    await BatchProcessor(pool, KeptLetters()).process(
        [chunk(await new_action(pool, acct, 1), acct, 0, 1, seed)]
    )
    first, second, third = [await new_action(pool, acct, 1, "update") for _ in range(3)]
    by_external_id = Chunk(
        second,
        acct,
        "contact",
        "update",
        0,
        1,
        [{"external_id": "X-1", "first_name": "second"}],
        {"match_on": "external_id"},
    )
    await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(first, acct, 0, 1, [{"email": "other@example.com"}], "update"),
            by_external_id,
            chunk(third, acct, 0, 1, [{"email": "e@example.com", "first_name": "third"}], "update"),
        ]
    )
    name = await pool.fetchval("SELECT first_name FROM contacts WHERE account_id = $1", acct)
    assert name == "third"


async def test_an_action_paused_during_its_last_rows_completes(pool: asyncpg.Pool) -> None:
    acct = account()
    action_id = await new_action(pool, acct, 2)
    processor = BatchProcessor(pool, KeptLetters())
    await processor.process([chunk(action_id, acct, 0, 1, [{"email": "a@example.com"}])])
    await pool.execute("UPDATE bulk_actions SET status = 'paused' WHERE id = $1", action_id)
    await processor.process([chunk(action_id, acct, 1, 2, [{"email": "b@example.com"}])])
    assert (await counts(pool, action_id))["status"] == "completed"


async def test_absent_keys_keep_values_and_null_clears(pool: asyncpg.Pool) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    first = await new_action(pool, acct, 1)
    await processor.process(
        [
            chunk(
                first,
                acct,
                0,
                1,
                [
                    {
                        "email": "k@example.com",
                        "first_name": "Kay",
                        "company": "Acme",
                        "phone": "1",
                    },
                ],
            )
        ]
    )
    second = await new_action(pool, acct, 1)
    [out] = await processor.process(
        [
            chunk(
                second,
                acct,
                0,
                1,
                [
                    {"email": "k@example.com", "company": None, "phone": ""},
                ],
            )
        ]
    )
    assert out.codes == "u"
    row = await pool.fetchrow(
        "SELECT first_name, company, phone FROM contacts WHERE account_id = $1", acct
    )
    assert dict(row) == {"first_name": "Kay", "company": None, "phone": "1"}


@pytest.mark.parametrize(
    ("action", "exists", "code", "reason"),
    [
        ("create", True, "s", "already_exists"),
        ("create", False, "c", ""),
        ("update", False, "f", "not_found"),
        ("update", True, "u", ""),
        ("delete", False, "s", "not_found"),
        ("delete", True, "d", ""),
    ],
)
async def test_each_action_on_present_and_missing_contacts(
    pool: asyncpg.Pool, action: str, exists: bool, code: str, reason: str
) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    if exists:
        seed = await new_action(pool, acct, 1)
        await processor.process([chunk(seed, acct, 0, 1, [{"email": "e@example.com"}])])
    action_id = await new_action(pool, acct, 1, action)
    [out] = await processor.process(
        [chunk(action_id, acct, 0, 1, [{"email": "e@example.com", "first_name": "New"}], action)]
    )
    assert out.codes == code
    assert (out.problems[0].reason if reason else "") == reason
    remaining = await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", acct)
    assert remaining == (0 if action == "delete" else int(exists or action != "update"))


async def test_new_rows_take_the_insert_path_and_the_rest_are_decided_in_full(
    pool: asyncpg.Pool,
) -> None:
    """One round mixing every case the insert fast path must hand over."""
    acct = account()
    seed = await new_action(pool, acct, 2)
    await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(
                seed,
                acct,
                0,
                1,
                [
                    {"email": "old@example.com", "first_name": "Old"},
                    {"email": "owner@example.com", "external_id": "ext-1"},
                ],
            )
        ]
    )
    action_id = await new_action(pool, acct, 5)
    rows = [
        {"email": "new@example.com", "first_name": "New"},  # created by the fast path
        {"email": "OLD@example.com", "first_name": "Older"},  # refused: updated in full
        {"email": "thief@example.com", "external_id": "ext-1"},  # refused: conflict
        {"email": "new@example.com", "first_name": "Again"},  # in-file duplicate
        {"email": "fresh@example.com", "external_id": "ext-2"},  # created
    ]

    [outcome] = await BatchProcessor(pool, KeptLetters()).process(
        [chunk(action_id, acct, 0, 1, rows)]
    )

    assert outcome.codes == "cufsc"
    assert outcome.problems[2].reason == "external_id_taken"
    assert outcome.problems[3] == RowProblem("duplicate", "same email as row 1", 1)
    stored = await pool.fetch(
        "SELECT email, first_name, external_id, last_action_id::text AS action_id, last_row_no"
        " FROM contacts WHERE account_id = $1 ORDER BY email",
        acct,
    )
    assert [tuple(r) for r in stored] == [
        ("fresh@example.com", None, "ext-2", action_id, 5),
        ("new@example.com", "New", None, action_id, 1),
        ("old@example.com", "Older", None, action_id, 2),
        ("owner@example.com", None, "ext-1", seed, 2),
    ]


async def test_an_action_of_existing_rows_is_decided_in_full(
    pool: asyncpg.Pool,
) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    emails = [{"email": f"u{i}@example.com"} for i in range(4)]
    seed = await new_action(pool, acct, 4)
    await processor.process([chunk(seed, acct, 0, 1, emails)])
    again = await new_action(pool, acct, 8)

    first, second = await processor.process(
        [chunk(again, acct, 0, 1, emails), chunk(again, acct, 1, 5, emails)]
    )

    assert (first.codes, second.codes) == ("nnnn", "ssss")


async def test_a_value_postgres_cannot_store_fails_only_its_row(pool: asyncpg.Pool) -> None:
    """A NUL character passes validation but no text or jsonb column takes it."""
    acct = account()
    action_id = await new_action(pool, acct, 3)
    rows = [
        {"email": "a@example.com", "first_name": "A"},
        {"email": "b@example.com", "first_name": "B\u0000"},
        {"email": "c@example.com", "custom_fields": {"note": "c\u0000"}},
    ]
    [out] = await BatchProcessor(pool, KeptLetters()).process([chunk(action_id, acct, 0, 1, rows)])
    assert out.codes == "cff"
    assert {i: p.reason for i, p in out.problems.items()} == {
        1: "untranslatable_character",
        2: "untranslatable_character",
    }
    stored = await pool.fetch("SELECT email FROM contacts WHERE account_id = $1", acct)
    assert [r["email"] for r in stored] == ["a@example.com"]
    assert (await counts(pool, action_id))["failed"] == 2


async def tags_of(pool: asyncpg.Pool, acct: str) -> dict[str, list[str] | None]:
    rows = await pool.fetch("SELECT email, tags FROM contacts WHERE account_id = $1", acct)
    return {r["email"]: r["tags"] for r in rows}


async def test_tags_are_a_set_compared_without_case(pool: asyncpg.Pool) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 2)
    await processor.process(
        [chunk(seed, acct, 0, 1, [{"email": "a@example.com"}, {"email": "b@example.com"}])]
    )

    async def tag(action: str, rows: list[dict[str, Any]]) -> tuple[str, dict[int, str]]:
        action_id = await new_action(pool, acct, len(rows), action)
        [out] = await processor.process([chunk(action_id, acct, 0, 1, rows, action)])
        assert (await counts(pool, action_id))["status"] == "completed"
        return out.codes, {i: p.reason for i, p in out.problems.items()}

    assert await tag(
        "add_tags",
        [
            {"email": "A@example.com", "tags": "VIP; churn risk ;vip"},  # as a CSV cell gives it
            {"email": "b@example.com", "tags": ["x"]},
            {"email": "nobody@example.com", "tags": ["y"]},
            {"email": "a@example.com", "tags": ["z"]},  # the same contact again
        ],
    ) == ("uufs", {2: "not_found", 3: "duplicate"})
    assert await tags_of(pool, acct) == {
        "a@example.com": ["VIP", "churn risk"],
        "b@example.com": ["x"],
    }
    # Already there in another case: unchanged, stored as first given.
    assert await tag("add_tags", [{"email": "a@example.com", "tags": ["CHURN RISK", "vip"]}]) == (
        "n",
        {},
    )
    assert await tag("add_tags", [{"email": "a@example.com", "tags": ["vip", "New"]}]) == ("u", {})
    assert (await tags_of(pool, acct))["a@example.com"] == ["VIP", "churn risk", "New"]
    assert await tag(
        "remove_tags",
        [
            {"email": "a@example.com", "tags": ["vip", "absent"]},
            {"email": "b@example.com", "tags": ["absent"]},
            {"email": "nobody@example.com", "tags": ["x"]},
        ],
    ) == ("unf", {2: "not_found"})
    assert await tags_of(pool, acct) == {
        "a@example.com": ["churn risk", "New"],
        "b@example.com": ["x"],
    }


async def test_tag_rows_name_their_problem_and_match_like_the_others(pool: asyncpg.Pool) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 1)
    await processor.process(
        [chunk(seed, acct, 0, 1, [{"email": "a@example.com", "external_id": "crm-1"}])]
    )
    action_id = await new_action(pool, acct, 4, "add_tags")
    rows = [
        {"email": "a@example.com"},
        {"email": "a@example.com", "tags": ["x" * 101]},
        {"email": "a@example.com", "tags": " ; "},
        {"email": "a@example.com", "tags": ["ok"], "first_name": "not a tag field"},
    ]
    [out] = await processor.process([chunk(action_id, acct, 0, 1, rows, "add_tags")])
    assert out.codes == "fffu"
    assert [out.problems[i].reason for i in range(3)] == [
        "missing_tags",
        "invalid_tags",
        "invalid_tags",
    ]
    assert "tags.0" in out.problems[1].message
    by_external_id = await new_action(pool, acct, 1, "remove_tags")
    matched = chunk(
        by_external_id, acct, 0, 1, [{"external_id": "crm-1", "tags": "OK"}], "remove_tags"
    )
    matched = replace(matched, options={"match_on": "external_id"})
    [out] = await processor.process([matched])
    assert out.codes == "u"
    stored = await pool.fetchrow(
        "SELECT first_name, tags FROM contacts WHERE account_id = $1", acct
    )
    assert tuple(stored) == (None, [])


async def test_an_upsert_and_tags_in_one_batch_apply_in_order(pool: asyncpg.Pool) -> None:
    acct = account()
    upsert = await new_action(pool, acct, 1)
    add = await new_action(pool, acct, 1, "add_tags")
    remove = await new_action(pool, acct, 1, "remove_tags")
    outs = await BatchProcessor(pool, KeptLetters()).process(
        [
            chunk(upsert, acct, 0, 1, [{"email": "a@example.com"}]),
            chunk(
                add, acct, 0, 1, [{"email": "a@example.com", "tags": ["one", "two"]}], "add_tags"
            ),
            chunk(remove, acct, 0, 1, [{"email": "a@example.com", "tags": ["ONE"]}], "remove_tags"),
        ]
    )
    assert [o.codes for o in outs] == ["c", "u", "u"]
    assert await tags_of(pool, acct) == {"a@example.com": ["two"]}


async def test_tag_actions_apply_to_contacts_only(pool: asyncpg.Pool) -> None:
    acct = account()
    action_id = await new_action(pool, acct, 1, "add_tags")
    company = Chunk(action_id, acct, "company", "add_tags", 0, 1, [{"domain": "a.com"}])
    [out] = await BatchProcessor(pool, KeptLetters()).process([company])
    assert out.codes == "f"
    assert out.problems[0].reason == "unknown_action"


async def test_opportunities_reference_contacts_by_email(pool: asyncpg.Pool) -> None:
    acct = account()
    processor = BatchProcessor(pool, KeptLetters())
    seed = await new_action(pool, acct, 1)
    await processor.process([chunk(seed, acct, 0, 1, [{"email": "ada@example.com"}])])
    contact_id = await pool.fetchval("SELECT id FROM contacts WHERE account_id = $1", acct)

    def deal(action_id: str, rows: list[dict[str, Any]], action: str = "upsert") -> Chunk:
        return Chunk(action_id, acct, "opportunity", action, 0, 1, rows)

    first = await new_action(pool, acct, 4)
    rows = [
        {
            "external_id": "D-1",
            "name": "Anvils",
            "amount": "1200.50",
            "stage": "Closed Won",
            "close_date": "2026-03-31",
            "contact_email": "ADA@example.com",
            "custom_fields": {"source": "fair"},
        },
        {"external_id": "D-2", "contact_email": "nobody@example.com"},  # no such contact
        {"external_id": "d-1", "amount": 0},  # external ids compare with case
        {"external_id": "D-1", "name": "again"},  # in-file duplicate
    ]
    [out] = await processor.process([deal(first, rows)])
    assert out.codes == "cfcs"
    assert out.problems[1].reason == "contact_not_found"
    assert out.problems[3] == RowProblem("duplicate", "same external_id as row 1", 1)
    stored = await pool.fetchrow(
        "SELECT name, amount, stage, close_date, contact_id, custom_fields FROM opportunities"
        " WHERE account_id = $1 AND external_id = 'D-1'",
        acct,
    )
    assert dict(stored) == {
        "name": "Anvils",
        "amount": Decimal("1200.50"),
        "stage": "closed_won",
        "close_date": date(2026, 3, 31),
        "contact_id": contact_id,
        "custom_fields": {"source": "fair"},
    }

    second = await new_action(pool, acct, 3, "update")
    rows = [
        {"external_id": "D-1", "stage": "closed_won", "amount": "1200.5"},  # the same values
        {"external_id": "d-1", "contact_email": "ada@example.com"},
        {"external_id": "D-9", "name": "missing"},
    ]
    [out] = await processor.process([deal(second, rows, "update")])
    assert out.codes == "nuf"
    assert out.problems[2].reason == "not_found"
    third = await new_action(pool, acct, 1, "update")
    [out] = await processor.process(
        [deal(third, [{"external_id": "D-1", "contact_email": None}], "update")]
    )
    assert out.codes == "u"
    linked = await pool.fetch(
        "SELECT external_id, contact_id FROM opportunities WHERE account_id = $1", acct
    )
    assert dict(map(tuple, linked)) == {"D-1": None, "d-1": contact_id}


def test_the_insert_choice_forgets_the_action_consulted_least_recently() -> None:
    """Past its size, the fast path's choice forgets one action at a time, the one
    consulted least recently: not an action a batch is applying, whose later
    transaction must decide as its first did. (It used to forget every action
    at once.)"""
    choice = _InsertFirst(remembered=2)
    nothing = ReadRows([], [], [], [], [], [], {})
    rounds = {a: [(_Part((a, 0), "acct", a, "upsert", 1, nothing), [0])] for a in "abc"}
    for action in "ab":
        choice.record(rounds[action], rows=10, inserted=0)  # most refused: skip it now
    assert not choice.worth_trying(rounds["a"], "email")  # consulted: the most recent
    choice.record(rounds["c"], rows=10, inserted=0)
    assert [choice.worth_trying(rounds[a], "email") for a in "abc"] == [False, True, False]
