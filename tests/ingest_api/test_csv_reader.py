"""The streamed CSV reader on bytes made here: dialects, row numbers, broken rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator

import pytest

from bulkflow import constants
from ingest_api.csv_reader import (
    CsvFormat,
    CsvReader,
    CsvRejected,
    RowBlock,
    escape_formula,
    unescape_formula,
)
from schemas.messages import Chunk

pytestmark = pytest.mark.anyio

BIG_PIECE = 64 * 1024  # bytes per body piece for large inputs, as a request would send


async def body(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    """The body in small pieces, so records straddle reads."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(
    data: bytes, fmt: CsvFormat | None = None, rows_per_block: int = 2, piece: int = 7
) -> tuple[list[str], list[RowBlock]]:
    async with CsvReader(body(data, piece), fmt or CsvFormat(), rows_per_block) as reader:
        return reader.header, [block async for block in reader.blocks()]


async def rejection(data: bytes, piece: int = 7) -> CsvRejected:
    with pytest.raises(CsvRejected) as raised:
        await read(data, piece=piece)
    return raised.value


def rows_of(blocks: list[RowBlock]) -> list[tuple[int, dict[str, str]]]:
    return [(b.first_row_no + i, row) for b in blocks for i, row in enumerate(b.rows)]


async def test_bom_crlf_quotes_and_newlines_in_fields() -> None:
    data = (
        "\ufeffEmail , Note\r\n"
        'a@x.io,"one, ""two"""\r\n'
        "\r\n"
        'b@x.io,"line 1\r\nline 2"\r\n'
        "c@x.io,plain\r\n"
    ).encode()
    header, blocks = await read(data)
    assert header == ["Email", "Note"]
    assert rows_of(blocks) == [
        (1, {"Email": "a@x.io", "Note": 'one, "two"'}),
        (2, {"Email": "b@x.io", "Note": "line 1\r\nline 2"}),
        (3, {"Email": "c@x.io", "Note": "plain"}),
    ]
    assert [b.first_row_no for b in blocks] == [1, 3]


async def test_legacy_encoding_and_delimiter() -> None:
    data = "email;name\nz@x.io;Zoë Müller\n".encode("cp1252")
    _, blocks = await read(data, CsvFormat(encoding="cp1252", delimiter=";"))
    assert rows_of(blocks) == [(1, {"email": "z@x.io", "name": "Zoë Müller"})]


BROKEN_ROWS = (
    b"email,name\na@x.io,A\nb@x.io,B,extra\n\xff\xfe@x.io,C\nd@x.io,"
    + b"x" * 70_000
    + b"\ne@x.io\n"
)


async def test_broken_rows_fail_alone() -> None:
    _, blocks = await read(BROKEN_ROWS, rows_per_block=10)
    [block] = blocks
    assert block.rows[0] == {"email": "a@x.io", "name": "A"}
    assert block.broken[1].reason == "too_many_fields"
    assert block.broken[2].reason == "invalid_encoding"
    assert block.broken[3].reason == "field_too_long"
    assert block.rows[4] == {"email": "e@x.io"}  # fewer fields: the rest are absent
    assert set(block.broken) == {1, 2, 3}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"\n\n", "empty_file"),
        (b"email,,name\n", "invalid_header"),
        (b"email,Email\n", "invalid_header"),
        (b"email,First Name,first_name\n", "invalid_header"),
        (b"em\xffail\n", "invalid_encoding"),
    ],
)
async def test_unreadable_headers_reject_the_file(data: bytes, code: str) -> None:
    with pytest.raises(CsvRejected) as raised:
        await read(data)
    assert raised.value.code == code


def test_format_is_checked_before_reading() -> None:
    with pytest.raises(CsvRejected) as raised:
        CsvFormat(encoding="klingon").validate()
    assert raised.value.code == "unknown_encoding"
    with pytest.raises(CsvRejected):
        CsvFormat(delimiter="ab").validate()


async def test_broken_rows_keep_their_values_for_the_export() -> None:
    _, blocks = await read(BROKEN_ROWS, rows_per_block=10)
    [block] = blocks
    assert block.rows[1] == {"email": "b@x.io", "name": "B"}
    assert block.broken[1].message == "3 fields for 2 header columns; beyond them: ['extra']"
    assert block.rows[2] == {"email": "\ufffd\ufffd@x.io", "name": "C"}
    # Cut to the field limit, and marked: sent back unchanged, it fails again.
    assert block.rows[3] == {"email": "d@x.io", "name": "x" * constants.MAX_FIELD_CHARS + "\u2026"}
    chunk = Chunk("a", "acc", "contact", "upsert", 0, 1, block.rows, broken=block.broken)
    assert Chunk.from_bytes(chunk.to_bytes()).rows == block.rows  # JSON carries them


@pytest.mark.parametrize(
    "record",
    [
        b"a@x.io," + b"x" * (8 << 20),  # one line, one field, no newline
        b"a@x.io," + b"a," * (4 << 20),  # one line of many short fields
        b'a@x.io,"' + b'\n","' * (2 << 20),  # many short lines, each a field, all quoted
    ],
    ids=["long-field", "many-fields", "many-quoted-lines"],
)
async def test_an_overlong_record_rejects_the_file_before_it_is_all_read(record: bytes) -> None:
    sent = 0

    async def counted(data: bytes) -> AsyncIterator[bytes]:
        nonlocal sent
        async for piece in body(data, BIG_PIECE):
            sent += len(piece)
            yield piece

    data = b"email,name\n" + record + b"\nb@x.io,B\n"
    with pytest.raises(CsvRejected) as raised:
        async with CsvReader(counted(data), CsvFormat(), 2) as reader:
            [block async for block in reader.blocks()]
    assert raised.value.code == "record_too_long"
    assert raised.value.message.startswith("row 1: longer than 1,048,576 characters")
    # What memory held: the record's limit and the queued pieces, not the 8 MiB.
    assert sent < constants.MAX_RECORD_CHARS + 24 * BIG_PIECE


async def test_a_quoted_field_past_the_record_limit_rejects_the_file() -> None:
    """The review's case: read on, the field's lines would be taken for rows."""
    data = b'email,note\na@x.io,"' + b"x\n" * 600_000 + b'"\nb@x.io,B\nc@x.io,C'
    rejected = await rejection(data, BIG_PIECE)
    assert rejected.code == "record_too_long"


@pytest.fixture
def small_field_limit() -> Iterator[None]:
    """The csv module's own field limit, below the reader's record limit."""
    previous = csv.field_size_limit(1_000)
    yield
    csv.field_size_limit(previous)


@pytest.mark.usefixtures("small_field_limit")
async def test_a_csv_syntax_error_rejects_the_rest_of_the_file() -> None:
    data = b'email,note\na@x.io,A\nb@x.io,"' + b"x\n" * 1_000 + b'"\nc@x.io,C\n'
    rejected = await rejection(data)
    assert rejected.code == "invalid_csv"
    assert rejected.message.startswith("row 2: field larger than field limit (1000)")


@pytest.mark.parametrize(
    ("data", "row"),
    [
        (b'email,name\na@x.io,"A\nb@x.io,B\nc@x.io,C\n', 1),
        (b'email,name\na@x.io,A\n\nb@x.io,"B', 2),
    ],
)
async def test_a_quote_open_at_the_end_of_the_file_rejects_it(data: bytes, row: int) -> None:
    rejected = await rejection(data)
    assert rejected.code == "unclosed_quote"
    assert rejected.message == f"row {row}: a quoted field is not closed before the end of the file"


async def test_a_quote_closed_at_the_end_of_the_file_is_a_row() -> None:
    _, blocks = await read(b'email,name\na@x.io,"A\nB"')
    assert rows_of(blocks) == [(1, {"email": "a@x.io", "name": "A\nB"})]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-16-be"])
async def test_a_byte_order_mark_is_not_part_of_the_header(encoding: str) -> None:
    text = '"email",name\r\na@x.io,A\r\n'
    # The utf-16 codec writes its own mark (and drops it when reading).
    data = text.encode(encoding) if encoding == "utf-16" else ("\ufeff" + text).encode(encoding)
    header, blocks = await read(data, CsvFormat(encoding=encoding))
    assert header == ["email", "name"]
    assert rows_of(blocks) == [(1, {"email": "a@x.io", "name": "A"})]


async def test_trailing_empty_header_columns_are_not_columns() -> None:
    """Spreadsheets export formatted but empty columns: ``email,name,,``."""
    data = b"email,name,,\r\na@x.io,A,,\r\nb@x.io,B\r\nc@x.io,C,,x\r\n"
    header, blocks = await read(data, rows_per_block=10)
    assert header == ["email", "name"]
    [block] = blocks
    assert list(block.rows)[:2] == [
        {"email": "a@x.io", "name": "A"},
        {"email": "b@x.io", "name": "B"},
    ]
    # A value under no column is still a value sent: that row fails alone.
    assert block.broken[2].reason == "too_many_fields"
    assert set(block.broken) == {2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b",,\n", "the header names no column"),
        (b"email,,name,,\n", "a header column is empty (only trailing ones may be)"),
    ],
)
async def test_empty_header_columns_elsewhere_reject_the_file(data: bytes, message: str) -> None:
    rejected = await rejection(data)
    assert (rejected.code, rejected.message) == ("invalid_header", message)


async def test_a_thousand_columns_are_read_and_more_are_refused_naming_the_cap() -> None:
    names = [f"col{i}" for i in range(constants.MAX_CSV_COLUMNS - 1)]
    data = ",".join(["email", *names]).encode() + b"\n" + b"a@x.io," + b"v," * len(names) + b"\n"
    header, blocks = await read(data, piece=BIG_PIECE)
    assert len(header) == constants.MAX_CSV_COLUMNS == 1_000
    assert rows_of(blocks)[0][1]["col998"] == "v"

    wider = ",".join(["email", *names, "one_more"]).encode() + b"\n"
    rejected = await rejection(wider, BIG_PIECE)
    assert rejected.code == "too_many_columns"
    assert rejected.message == "the header has 1,001 columns; at most 1,000 are accepted"


async def test_wide_rows_make_smaller_blocks() -> None:
    """A block's message stays under the broker's 1 MB whatever the width of its rows."""
    names = [f"column_{i}" for i in range(999)]
    row = b"a@x.io," + b"value," * len(names) + b"\n"
    data = ",".join(["email", *names]).encode() + b"\n" + row * 100
    _, blocks = await read(data, rows_per_block=500, piece=BIG_PIECE)
    assert sum(len(b.rows) for b in blocks) == 100
    assert len(blocks) > 1
    for block in blocks:
        chunk = Chunk("a", "acc", "contact", "upsert", 0, block.first_row_no, block.rows)
        assert len(chunk.to_bytes()) < 1_000_000
    assert [b.first_row_no for b in blocks] == [
        1 + sum(len(b.rows) for b in blocks[:i]) for i in range(len(blocks))
    ]


FORMULAS = ["=HYPERLINK(\"http://x.io\")", "@SUM(1+1)", "+1+1", "-5", "+44 20 7946 0000",
            "\tTab", "\rCR", "'=quoted", "''-5", "'plain", "plain", ""]  # fmt: skip


def test_formula_cells_are_escaped_exactly() -> None:
    escaped = [escape_formula(value) for value in FORMULAS]
    assert escaped[:7] == ["'" + value for value in FORMULAS[:7]]
    assert escaped[7:9] == ["''=quoted", "'''-5"]
    assert escaped[9:] == FORMULAS[9:]  # nothing a spreadsheet would run
    assert [unescape_formula(value) for value in escaped] == FORMULAS


async def test_an_export_sent_back_loses_the_escapes_and_only_an_export() -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([escape_formula(name) for name in ["email", "=Name", "row_no", "error"]])
    writer.writerows([["a@x.io", escape_formula(value), 1, "invalid: x"] for value in FORMULAS])
    header, blocks = await read(out.getvalue().encode(), rows_per_block=100)
    assert header == ["email", "=Name", "row_no", "error"]
    assert [row["=Name"] for _, row in rows_of(blocks)] == FORMULAS

    plain = b"email,name\na@x.io,'=kept\n"  # not an export: the cell is as sent
    _, blocks = await read(plain)
    assert rows_of(blocks) == [(1, {"email": "a@x.io", "name": "'=kept"})]
