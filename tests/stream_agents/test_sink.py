"""The ClickHouse sink, on the embedded engine: one outcome per input row, idempotent writes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import cast

import orjson
import pytest

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from bulkflow.kafka import Producer
from bulkflow.settings import Settings
from schemas.messages import OutcomeBatch, RowProblem
from stream_agents import dead_letters
from stream_agents.dead_letters import DeadLetterQueue
from stream_agents.outcomes import OutcomePublisher, grouped, messages
from stream_agents.sink import OutcomeSink
from tests.stream_agents.support import records_on

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


def sink_of(clickhouse: ClickHouse) -> OutcomeSink:
    """A sink for messages ClickHouse takes: nothing reaches its dead-letter queue."""
    return OutcomeSink(clickhouse, cast(DeadLetterQueue, None), "outcomes")


async def test_rewritten_outcomes_count_once(clickhouse: ClickHouse) -> None:
    action_id = str(uuid.uuid4())
    sink = sink_of(clickhouse)
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
    assert await sink_of(clickhouse).write([batch(action_id, chunk_no=2).to_bytes()]) == 1
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


async def test_messages_clickhouse_refuses_are_dead_lettered_and_the_others_written(
    clickhouse: ClickHouse, isolated: Settings
) -> None:
    action_id = str(uuid.uuid4())
    good = [batch(action_id, n).to_bytes() for n in range(5)]
    undecodable = b'{"codes": 1'
    refused = orjson.dumps({**orjson.loads(good[0]), "first_row_no": "not a number"})
    async with Producer.open(isolated) as producer:
        letters = DeadLetterQueue(producer, isolated.topic(constants.DEAD_LETTERS_TOPIC))
        sink = OutcomeSink(clickhouse, letters, "outcomes", interval=0)
        assert await sink.write([good[0], undecodable, *good[1:3], refused, *good[3:]]) == 5
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": action_id})
    assert sum(count for *_, count in rows) == 15
    kept = await dead_letters.list_pending(isolated)
    assert sorted(letter.raw for letter in kept) == sorted([undecodable, refused])
    assert {(letter.kind, letter.topic) for letter in kept} == {("undecodable", "outcomes")}


async def test_wide_outcomes_are_split_into_messages_that_expand_to_the_same_rows(
    clickhouse: ClickHouse, isolated: Settings
) -> None:
    action_id = str(uuid.uuid4())
    wide = {i: {"email": f"bad{i}", "note": "x" * 10_000} for i in range(300)}
    whole = OutcomeBatch(
        action_id=action_id,
        account_id="acme",
        entity="contact",
        action="upsert",
        chunk_no=0,
        first_row_no=1,
        codes="f" * 300,
        problems=dict.fromkeys(wide, RowProblem("invalid_email", "email: not valid")),
        keys=[row["email"] for row in wide.values()],
        rows=wide,
        processed_at=1_700_000_000.0,
    )
    parts = list(messages(whole))
    assert len(parts) > 1
    assert all(len(part) <= constants.OUTCOME_TARGET_BYTES for part in parts)
    async with Producer.open(isolated) as producer:
        letters = DeadLetterQueue(producer, isolated.topic(constants.DEAD_LETTERS_TOPIC))
        assert await OutcomeSink(clickhouse, letters, "outcomes").write(parts) == len(parts)
    page = {"account_id": "acme", "action_id": action_id, "after": 0, "limit": 1000}
    problems = await clickhouse.rows("action_problem_rows", {**page, "outcomes": ["failed"]})
    assert [row[0] for row in problems] == list(range(1, 301))
    assert [orjson.loads(row[4]) for row in problems] == list(wide.values())


async def test_an_accounts_chunks_travel_as_one_message_that_expands_to_every_row(
    clickhouse: ClickHouse,
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    batches = [batch(first, 0), replace(batch(second, 0), account_id="other"), batch(first, 1)]
    sent = list(grouped(batches))
    assert [(key, message.count(b"\n") + 1) for key, message in sent] == [
        (b"acme", 2),
        (b"other", 1),
    ]
    assert await sink_of(clickhouse).write([message for _, message in sent]) == 2
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": first})
    assert sum(count for *_, count in rows) == 6
    rows = await clickhouse.rows("action_stats", {"account_id": "other", "action_id": second})
    assert sum(count for *_, count in rows) == 3


def test_grouped_messages_stay_within_the_target_and_keep_every_line_in_order() -> None:
    action_id = str(uuid.uuid4())
    wide = {"email": "bad", "note": "x" * 10_000}
    batches = [replace(batch(action_id, n), rows={1: wide, 2: wide}) for n in range(100)]
    sent = list(grouped(batches))
    assert len(sent) > 1
    assert all(len(message) <= constants.OUTCOME_TARGET_BYTES for _, message in sent)
    lines = [line for _, message in sent for line in message.split(b"\n")]
    assert [OutcomeBatch.from_bytes(line) for line in lines] == [
        OutcomeBatch.from_bytes(b.to_bytes()) for b in batches
    ]


async def test_a_message_with_a_line_clickhouse_refuses_is_dead_lettered_whole(
    clickhouse: ClickHouse, isolated: Settings
) -> None:
    action_id = str(uuid.uuid4())
    good = batch(action_id, 0).to_bytes()
    refused = orjson.dumps({**orjson.loads(good), "first_row_no": "not a number"})
    mixed = b"\n".join([batch(action_id, 1).to_bytes(), refused])
    async with Producer.open(isolated) as producer:
        letters = DeadLetterQueue(producer, isolated.topic(constants.DEAD_LETTERS_TOPIC))
        sink = OutcomeSink(clickhouse, letters, "outcomes", interval=0)
        assert await sink.write([good, mixed]) == 1
    rows = await clickhouse.rows("action_stats", {"account_id": "acme", "action_id": action_id})
    assert sum(count for *_, count in rows) == 3
    assert [letter.raw for letter in await dead_letters.list_pending(isolated)] == [mixed]


async def test_a_drained_batch_says_so_on_each_of_its_messages(database: Settings) -> None:
    # Its messages go to one partition per account, and the sink inserts at
    # the first drained one it sees: each carries the header.
    action = str(uuid.uuid4())
    async with OutcomePublisher.start(database) as publisher:
        await publisher.publish([batch(action, 0)])
        await publisher.publish(
            [batch(action, 1), replace(batch(action, 2), account_id="globex")], drained=True
        )
    records = await records_on(
        database, constants.OUTCOMES_TOPIC, 3, lambda record: action.encode() in record.value
    )
    headers = {OutcomeBatch.from_bytes(r.value).chunk_no: dict(r.headers) for r in records}
    assert headers == {
        0: {},
        1: {constants.DRAINED_HEADER: b"1"},
        2: {constants.DRAINED_HEADER: b"1"},
    }
