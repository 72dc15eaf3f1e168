"""The plain INSERT by binary COPY stores what the statement stores, in the real tables."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from bulkflow.binary_copy import Repeated
from schemas import entity_sql
from schemas.entity import ENTITIES
from stream_agents.plain_insert import NewRows, PlainInsert
from tests.stream_agents.test_batch import new_action
from tests.support import account_id as account

pytestmark = pytest.mark.anyio

CONTACT = ENTITIES["contact"]
#: Contact rows in ContactRow's field order: email, external_id, first_name,
#: last_name, phone, company, job_title, status, lead_score, custom_fields.
ROWS: list[tuple[Any, ...]] = [
    ("a@example.com", "x-1", "Ada", "Lovelace", None, "Analytical", "", "lead", 0, None),
    ("b@example.com", None, "Ünïcödé 😀", None, "+1 555", None, None, None, None, {"k": "v"}),
    ("c@example.com", None, 'say "hi"\tand\\', None, None, None, None, None, 100, {"n": [1]}),
]


def contact_rows(acct: str, action_id: str, *, arrays: bool) -> NewRows:
    values = [list(column) for column in zip(*ROWS, strict=True)]
    columns = None
    if arrays:  # as the column reader gives them: custom fields as JSON texts
        columns = [pa.array(column) for column in values[:-1]]
        columns.append(pa.array([None, '{"k": "v"}', '{"n": [1]}']))
    return NewRows(
        Repeated([acct], [len(ROWS)]),
        Repeated([action_id], [len(ROWS)]),
        [2, 3, 4],
        lambda: values,
        columns,
    )


async def stored(pool: asyncpg.Pool, acct: str) -> list[tuple[Any, ...]]:
    fields = ", ".join([*CONTACT.fields, "last_action_id", "last_row_no"])
    rows = await pool.fetch(
        f"SELECT {fields} FROM contacts WHERE account_id = $1 ORDER BY id",
        acct,
    )
    return [tuple(row) for row in rows]


async def test_the_copy_columns_are_the_tables_columns_with_their_types(
    pool: asyncpg.Pool,
) -> None:
    for entity in ENTITIES.values():
        layout = entity_sql.copy_columns(entity)
        if entity.references:
            assert layout is None, entity.name  # resolved by a subquery: the statement
            continue
        assert layout is not None, entity.name
        types = dict(
            await pool.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                entity.table,
            )
        )
        assert {name: types[name] for name, _ in layout} == dict(layout), entity.name


@pytest.mark.parametrize("arrays", [False, True], ids=["python values", "arrow columns"])
async def test_rows_copied_are_stored_as_the_statement_stores_them(
    pool: asyncpg.Pool, arrays: bool
) -> None:
    plain = PlainInsert(CONTACT)
    by_copy, by_statement = account(), account()
    copied_action = await new_action(pool, by_copy, 3, "create")
    statement_action = await new_action(pool, by_statement, 3, "create")

    staged = plain.stage(contact_rows(by_copy, copied_action, arrays=arrays))
    other = plain.stage(contact_rows(by_statement, statement_action, arrays=arrays))
    async with pool.acquire() as conn:
        assert staged.copy is not None
        assert await plain.insert(conn, staged) == 3
        assert await plain.insert(conn, other.by_statement()) == 3

    copied, inserted = await stored(pool, by_copy), await stored(pool, by_statement)
    assert [row[:-2] for row in copied] == [row[:-2] for row in inserted]
    assert copied[0][-3] == {}  # no custom fields: {} as the statement's coalesce
    assert [(str(row[-2]), row[-1]) for row in copied] == [(copied_action, n) for n in (2, 3, 4)]


async def test_a_taken_key_refuses_the_copy_as_it_refuses_the_statement(
    pool: asyncpg.Pool,
) -> None:
    plain = PlainInsert(CONTACT)
    acct = account()
    action_id = await new_action(pool, acct, 3, "create")
    await pool.execute(
        "INSERT INTO contacts (account_id, email) VALUES ($1, 'B@example.com')", acct
    )
    staged = plain.stage(contact_rows(acct, action_id, arrays=True))
    async with pool.acquire() as conn:
        for attempt in (staged, staged.by_statement()):
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await plain.insert(conn, attempt)
    assert len(await stored(pool, acct)) == 1


def test_an_entity_referencing_another_stages_for_the_statement() -> None:
    opportunity = ENTITIES["opportunity"]
    fields = [["o-1"], ["Deal"], [None], [None], [None], [None], [None]]
    assert len(fields) == len(opportunity.fields)
    staged = PlainInsert(opportunity).stage(
        NewRows(
            Repeated(["acc"], [1]), Repeated([str(uuid.uuid4())], [1]), [1], lambda: fields, None
        )
    )
    assert staged.copy is None
    assert staged.statement is not None
