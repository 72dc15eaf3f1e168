"""Messages survive the trip through Kafka unchanged (pure logic)."""

from __future__ import annotations

from schemas.messages import Chunk, OutcomeBatch, RowProblem


def test_a_chunk_round_trips() -> None:
    chunk = Chunk(
        action_id="a",
        account_id="acct",
        entity="contact",
        action="upsert",
        chunk_no=3,
        first_row_no=1501,
        rows=[{"email": "ada@example.com", "lead_score": 7}, {}],
        options={"ignore_empty": True},
        broken={1: RowProblem("ragged_row", "3 fields, the header has 2")},
    )

    assert Chunk.from_bytes(chunk.to_bytes()) == chunk


def test_an_outcome_batch_round_trips() -> None:
    batch = OutcomeBatch(
        action_id="a",
        account_id="acct",
        entity="contact",
        action="upsert",
        chunk_no=0,
        first_row_no=1,
        codes="cfs",
        problems={1: RowProblem("invalid_email", "no"), 2: RowProblem("duplicate", "x", 1)},
        keys=["ada@example.com", "bad", "ada@example.com"],
        rows={1: {"email": "bad"}, 2: {"email": "ada@example.com"}},
        processed_at=1_700_000_000.123,
    )

    assert OutcomeBatch.from_bytes(batch.to_bytes()) == batch
