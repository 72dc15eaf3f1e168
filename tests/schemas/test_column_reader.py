"""The column reader reads every row exactly as the row reader does (pure logic).

Generated rows mix what the rules vouch for with everything they must leave
to the model: whitespace of every kind, non-ASCII, clear tokens, numbers as
text, JSON values of other types, unmapped columns, missing match values.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pyarrow as pa
from hypothesis import HealthCheck, given, settings

from schemas.action import ACTIONS
from schemas.cells import Cells
from schemas.column_reader import FieldValues, ReadRows, RowByRow
from schemas.entity import ENTITIES
from schemas.messages import RowProblem
from schemas.options import ActionOptions

_SPACES = st.sampled_from(["", " ", "\t", "\x1c", "\xa0", "\u3000", "\n"])
_WORDS = st.sampled_from(
    [
        "ada@example.com",
        "Ada@Example.COM",
        "bad@",
        "a..b@x.io",
        "josé@example.com",
        "x@y.z",
        "a b@x.io",
        "Ada",
        "",
        "42",
        "007",
        "-1",
        "101",
        "lead",
        " lead",
        "LEAD",
        "churned",
        "-",
        "x" * 101,
        "acme.com",
        "ü" * 100,
        "ü" * 101,
        "@x.io",
        "a@.io",
        "a@b.c",
        "a@b@c.io",
        "a@b.io.",
        "a" * 64 + "@x.io",
        "a" * 65 + "@x.io",
        "a@x",
        "a\x01b@x.io",
        "a.@x.io",
        "a@b.c0",
        "a@x.i\x1co",
        "x@" + "d" * 250 + ".io",
        "0",
        "18446744073709551616",
        "\u0661\u0662",
    ]
)
_TEXT = st.builds(lambda a, w, b: a + w + b, _SPACES, _WORDS, _SPACES)
_COLUMNS = ["email", "First Name", "lead_score", "status", "external_id", "Plan", "id"]
_JSON = st.one_of(_TEXT, st.integers(-5, 200), st.none(), st.booleans(), st.just({"a": 1}))


def _rows(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.dictionaries(st.sampled_from(_COLUMNS), values, max_size=len(_COLUMNS)),
        min_size=1,
        max_size=12,
    )


_OPTIONS = st.builds(
    ActionOptions,
    ignore_empty=st.booleans(),
    clear_token=st.sampled_from([None, "-"]),
    unmapped=st.sampled_from(["custom_fields", "ignore"]),
    match_on=st.sampled_from([None, "external_id", "id"]),
)


def _one_by_one(action: str, options: ActionOptions, cells: Cells) -> ReadRows:
    entity = ENTITIES["contact"]
    return RowByRow(ACTIONS[action].reader(entity, options)).read(cells, {})


def _columns(action: str, options: ActionOptions, cells: Cells) -> ReadRows:
    """The column reader's read. Its values are made from its Arrow columns (custom
    fields from their JSON texts), so comparing them with the row reader's checks
    the columns the plain INSERT copies."""
    read = ACTIONS[action].chunk_reader(ENTITIES["contact"], options).read(cells, {})
    if read.columns is not None:
        assert read.columns.schema.names == list(ENTITIES["contact"].fields)
        assert isinstance(read.values, FieldValues)
    return read._replace(columns=None)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows(_TEXT), options=_OPTIONS, action=st.sampled_from(["upsert", "delete"]))
def test_csv_rows_read_as_the_row_reader_reads_them(
    rows: list[dict[str, Any]], options: ActionOptions, action: str
) -> None:
    header = list(dict.fromkeys(name for row in rows for name in row)) or ["email"]
    cells = Cells.from_records(header, [[row.get(name) for name in header] for row in rows])
    assert _columns(action, options, cells) == _one_by_one(action, options, cells)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows(_JSON), options=_OPTIONS, action=st.sampled_from(["create", "update"]))
def test_json_rows_read_as_the_row_reader_reads_them(
    rows: list[dict[str, Any]], options: ActionOptions, action: str
) -> None:
    cells = Cells.from_rows(rows)
    assert _columns(action, options, cells) == _one_by_one(action, options, cells)


def test_broken_rows_fail_with_their_problem() -> None:
    cells = Cells.from_records(["email"], [["a@x.io"], ["b@x.io"]])
    problem = RowProblem("too_many_fields", "3 fields for 1 header columns")
    read = (
        ACTIONS["upsert"]
        .chunk_reader(ENTITIES["contact"], ActionOptions())
        .read(cells, {1: problem})
    )
    assert (read.valid, read.key, read.problems) == ([0], ["a@x.io"], {1: problem})


def _field_values(read: ReadRows) -> FieldValues:
    assert isinstance(read.values, FieldValues)
    return read.values


def test_rows_of_many_parts_are_taken_at_once_as_each_part_gives_them() -> None:
    reader = ACTIONS["upsert"].chunk_reader(ENTITIES["contact"], ActionOptions())
    header = ["email", "First Name", "lead_score", "Plan"]
    parts = [
        _field_values(
            reader.read(
                Cells.from_records(
                    header,
                    [[f"u{p}{i}@x.io", f"Ada {i}", str(i), '{"tier": 1}'] for i in range(5)],
                ),
                {},
            )
        )
        for p in range(3)
    ]
    picks = list(zip(parts, [[1, 3], [0], [2, 4]], strict=True))
    taken = FieldValues.at_each(picks)
    assert taken is not None
    each = [values.at(positions) for values, positions in picks]
    assert taken == [[v for columns in each for v in columns[f]] for f in range(len(taken))]
    assert taken[0] == ["u01@x.io", "u03@x.io", "u10@x.io", "u22@x.io", "u24@x.io"]

    assert FieldValues.at_each([]) is None
    other = FieldValues(pa.RecordBatch.from_pydict({"email": ["b@x.io"]}))  # another schema
    assert FieldValues.at_each([*picks, (other, [0])]) is None
