"""The ClickHouse sink: column building (pure) and idempotent writes (embedded engine)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bulkflow.clickhouse import ClickHouse
from schemas.messages import OutcomeBatch, RowProblem
from stream_agents.sink import OutcomeSink, columns

pytestmark = pytest.mark.anyio


def batch(action_id: str, chunk_no: int = 0) -> OutcomeBatch:
    return OutcomeBatch(
        action_id=action_id,
        account_id="acme",
        entity="contact",
        action="upsert",
        chunk_no=chunk_no,
        first_row_no=1 + 3 * chunk_no,
        codes="cfs",
        problems={
            1: RowProblem("invalid_email", "email: not valid"),
            2: RowProblem("duplicate", "same email as row 1", 1),
        },
        keys=["a@x.io", "bad", "A@x.io"],
        rows={1: {"email": "bad"}, 2: {"email": "A@x.io"}},
        processed_at=1_700_000_000.0,
    )


def test_columns_are_one_row_per_input_row() -> None:
    cols = columns([batch(str(uuid.uuid4()))])
    assert cols["row_no"] == [1, 2, 3]
    assert cols["outcome"] == ["succeeded", "failed", "skipped"]
    assert cols["operation"] == ["created", "", ""]
    assert cols["reason"] == ["", "invalid_email", "duplicate"]
    assert cols["related_row"] == [0, 0, 1]
    assert cols["row_data"] == ["", '{"email":"bad"}', '{"email":"A@x.io"}']
    assert {len(values) for values in cols.values()} == {3}


@pytest.fixture(scope="module")
async def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClickHouse]:
    path: Path = tmp_path_factory.mktemp("sink-clickhouse")
    async with ClickHouse.open(f"chdb://{path}") as client:
        await client.apply_migrations()
        yield client


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def test_rewritten_outcomes_count_once(clickhouse: ClickHouse) -> None:
    action_id = str(uuid.uuid4())
    sink = OutcomeSink(clickhouse)
    first, second = batch(action_id, 0).to_bytes(), batch(action_id, 1).to_bytes()
    assert await sink.write([first, second]) == 6
    assert await sink.write([first]) == 3  # redelivered
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": action_id})
    assert sorted(rows) == [
        ("failed", "", "invalid_email", 2),
        ("skipped", "", "duplicate", 2),
        ("succeeded", "created", "", 2),
    ]
