"""Messages survive the trip through Kafka unchanged (pure logic)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.messages import Chunk, OutcomeBatch, RowProblem, UndecodableChunk


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


def test_bytes_that_are_no_chunk_are_refused_with_one_error_type() -> None:
    # One error type, so the agents dead-letter every kind of bad message: a stream
    # with a schema but no batch raised StopIteration, which a coroutine turns into
    # a RuntimeError nothing catches.
    good = Chunk("a", "acct", "contact", "upsert", 0, 1, [{"email": "a@x.io"}]).to_bytes()
    schema_only = pa.BufferOutputStream()
    pa.ipc.new_stream(schema_only, pa.schema([("email", pa.string())])).close()
    batch = pa.RecordBatch.from_arrays([pa.array(["a@x.io"])], names=["email"])
    no_header = pa.BufferOutputStream()
    with pa.ipc.new_stream(no_header, batch.schema) as writer:
        writer.write_batch(batch)
    for data in (
        b"",
        b"\x00garbage",
        good[: len(good) // 2],
        schema_only.getvalue().to_pybytes(),
        no_header.getvalue().to_pybytes(),
        b"{not json",
        b'{"action_id": "x"}',
    ):
        with pytest.raises(UndecodableChunk):
            Chunk.from_bytes(data)
