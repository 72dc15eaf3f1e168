"""The ClickHouse sink, on the embedded engine: one outcome per input row, idempotent writes."""

from __future__ import annotations

import uuid

import pytest

from bulkflow.clickhouse import ClickHouse
from schemas.messages import OutcomeBatch, RowProblem
from stream_agents.sink import OutcomeSink

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


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def test_rewritten_outcomes_count_once(clickhouse: ClickHouse) -> None:
    action_id = str(uuid.uuid4())
    sink = OutcomeSink(clickhouse)
    first, second = batch(action_id, 0).to_bytes(), batch(action_id, 1).to_bytes()
    assert await sink.write([first, second]) == 2
    assert await sink.write([first]) == 1  # redelivered
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": action_id})
    assert sorted(rows) == [
        ("failed", "", "invalid_email", 2),
        ("skipped", "", "duplicate", 2),
        ("succeeded", "created", "", 2),
    ]


async def test_each_input_row_becomes_one_outcome_row(clickhouse: ClickHouse) -> None:
    action_id = str(uuid.uuid4())
    assert await OutcomeSink(clickhouse).write([batch(action_id, chunk_no=2).to_bytes()]) == 1
    page = {"account_id": "acme", "action_id": action_id, "after": 0, "limit": 10}
    logs = await clickhouse.rows(
        "action_logs", {**page, "row_to": 100, "outcome": "", "reason": ""}
    )
    assert [row[:7] for row in logs] == [
        (7, "succeeded", "created", "", "", 0, "a@x.io"),
        (8, "failed", "", "invalid_email", "email: not valid", 0, "bad"),
        (9, "skipped", "", "duplicate", "same email as row 1", 1, "A@x.io"),
    ]
    assert {row[7].timestamp() for row in logs} == {1_700_000_000.0}
    problems = await clickhouse.rows(
        "action_problem_rows", {**page, "outcomes": ["failed", "skipped"]}
    )
    assert [(row[0], row[4]) for row in problems] == [
        (8, '{"email":"bad"}'),
        (9, '{"email":"A@x.io"}'),
    ]


async def test_an_undecodable_message_is_dropped_and_the_others_written(
    clickhouse: ClickHouse,
) -> None:
    action_id = str(uuid.uuid4())
    good = batch(action_id).to_bytes()
    assert await OutcomeSink(clickhouse, interval=0).write([b'{"codes": 1', good]) == 1
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": action_id})
    assert sum(count for *_, count in rows) == 3
