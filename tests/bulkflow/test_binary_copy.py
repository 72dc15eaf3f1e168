"""Binary COPY data written from columns arrives in Postgres as the values given."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from bulkflow.binary_copy import BinaryCopy, CopyColumn, PgType, Repeated, Unencodable

pytestmark = pytest.mark.anyio

_COLUMNS = [
    CopyColumn("name", PgType.TEXT),
    CopyColumn("score", PgType.INTEGER),
    CopyColumn("extra", PgType.JSONB),
    CopyColumn("action", PgType.UUID),
]
_ACTIONS = [uuid.uuid4(), uuid.uuid4()]


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMPORARY TABLE copied (name text, score integer, extra jsonb,"
            " action uuid, seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
        )
        yield conn


async def copied(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch("SELECT name, score, extra, action FROM copied ORDER BY seq")
    return [tuple(row) for row in rows]


async def test_python_values_arrive_as_given(conn: asyncpg.Connection) -> None:
    copy = BinaryCopy("copied", _COLUMNS)
    names = ["Ada", None, "", "é ü 😀", 'tab\tnew\nline\\ and "quotes"']
    scores = [1, None, -(2**31), 2**31 - 1, 0]
    extras = [{"k": "v"}, None, {}, [1, 2.5, "ü"], "text"]
    actions = Repeated([str(_ACTIONS[0]), _ACTIONS[1]], [2, 3])

    written = await copy.copy(conn, copy.encode([names, scores, extras, actions]))

    assert written == 5
    assert await copied(conn) == list(
        zip(names, scores, extras, [_ACTIONS[0]] * 2 + [_ACTIONS[1]] * 3, strict=True)
    )


async def test_arrow_columns_arrive_as_given(conn: asyncpg.Connection) -> None:
    copy = BinaryCopy("copied", _COLUMNS)
    columns = [
        pa.array(["a", None, "c"]),
        pa.array([7, None, 9], pa.int64()),
        pa.array(['{"color": "teal"}', None, "[]"]),  # JSON texts
        Repeated([_ACTIONS[0]], [3]),
    ]

    assert await copy.copy(conn, copy.encode(columns)) == 3
    assert await copied(conn) == [
        ("a", 7, {"color": "teal"}, _ACTIONS[0]),
        (None, None, None, _ACTIONS[0]),
        ("c", 9, [], _ACTIONS[0]),
    ]


async def test_no_rows_copy_nothing(conn: asyncpg.Connection) -> None:
    copy = BinaryCopy("copied", _COLUMNS)
    assert await copy.copy(conn, copy.encode([[], [], [], Repeated([], [])])) == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (1, 2**31),  # beyond Postgres' integer: the statement's cast would fail the row
        (1, pa.array([2**31], pa.int64())),
        (0, 7),  # not text
        (0, "\ud800"),  # a lone surrogate: not UTF-8
        (3, "not-a-uuid"),
    ],
)
def test_a_value_copy_cannot_send_as_given_is_unencodable(column: int, value: Any) -> None:
    row: list[Any] = [["a"], [1], [None], [_ACTIONS[0]]]
    row[column] = value if isinstance(value, pa.Array) else [value]
    with pytest.raises(Unencodable):
        BinaryCopy("copied", _COLUMNS).encode(row)
