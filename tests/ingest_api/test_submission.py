"""Submission's pure parts: a JSON row's measured size, and the cut of blocks into chunks."""

from __future__ import annotations

import random
from typing import Any

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import given, settings

from bulkflow import constants
from ingest_api.csv_reader import RowBlock
from ingest_api.errors import PayloadTooLarge
from ingest_api.submission import _chunk_cells, _json_sizes, cut
from schemas.cells import Cells
from schemas.messages import Chunk, RowProblem

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
_ROWS = st.lists(
    st.dictionaries(st.sampled_from(["email", "Näme", 'q"uote', "a\nb", ""]), _JSON), max_size=8
)


@given(_ROWS)
@settings(max_examples=150, deadline=None)
def test_a_rows_size_is_its_json_texts_to_the_byte(rows: list[dict[str, Any]]) -> None:
    assert _json_sizes(Cells.from_rows(rows)).to_pylist() == [len(orjson.dumps(r)) for r in rows]


def _make(chunk_no: int, block: RowBlock) -> Chunk:
    return Chunk("a", "acc", "contact", "upsert", chunk_no, block.first_row_no, block.rows,
                 broken=block.broken)  # fmt: skip


def test_wide_rows_are_cut_below_the_target_keeping_row_numbers_and_problems() -> None:
    header = ["email", "notes"]
    records = [[f"r{i}@x.io", f"{i}" + "w" * 30_000] for i in range(200)]
    problem = RowProblem("too_many_fields", "3 fields for 2 header columns")
    block = RowBlock(11, Cells.from_records(header, records), {150: problem})
    pieces = list(cut(_make, 4, block))
    assert len(pieces) > 1
    assert [chunk.chunk_no for chunk, _ in pieces] == list(range(4, 4 + len(pieces)))
    rows = []
    for chunk, encoded in pieces:
        assert len(encoded) <= constants.CHUNK_TARGET_BYTES
        assert chunk.rows.batch.nbytes <= constants.CHUNK_TARGET_BYTES
        assert Chunk.from_bytes(encoded) == chunk
        assert chunk.first_row_no == 11 + len(rows)
        rows += [(chunk.first_row_no + i, row) for i, row in enumerate(chunk.rows)]
        for index, found in chunk.broken.items():
            assert (chunk.first_row_no + index, found) == (11 + 150, problem)
    assert rows == [(11 + i, {"email": r[0], "notes": r[1]}) for i, r in enumerate(records)]


def test_a_single_row_over_the_limit_fails_alone_without_its_values() -> None:
    # Random hex: no compression takes it below the limit.
    value = random.Random(7).randbytes(constants.MAX_ROW_BYTES // 2 + 1).hex()
    block = RowBlock(7, Cells.from_rows([{"email": "big@x.io", "notes": value}]))
    [(chunk, encoded)] = cut(_make, 0, block)
    assert len(encoded) < 4096
    assert list(chunk.rows) == [{}]
    assert chunk.broken[0].reason == "row_too_large"
    assert chunk.first_row_no == 7


def test_rows_too_large_are_refused_by_their_index_in_the_request() -> None:
    huge = "h" * constants.MAX_ROW_BYTES
    rows: list[dict[str, Any]] = [{"email": f"r{i}@x.io"} for i in range(1_200)]
    for index in (3, 700, 1_100):
        rows[index]["notes"] = huge
    rows[701]["notes"] = huge[: constants.MAX_ROW_BYTES - len('{"email":"r701@x.io","notes":""}')]
    with pytest.raises(PayloadTooLarge) as raised:
        _chunk_cells(rows)
    assert raised.value.details == {"limit_bytes": constants.MAX_ROW_BYTES, "rows": [3, 700, 1_100]}
    assert len(orjson.dumps(rows[701])) == constants.MAX_ROW_BYTES  # at the limit: accepted
