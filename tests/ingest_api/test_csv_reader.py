"""The streamed CSV reader on bytes made here: dialects, row numbers, broken rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ingest_api.csv_reader import CsvFormat, CsvReader, CsvRejected, RowBlock

pytestmark = pytest.mark.anyio


async def body(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    """The body in small pieces, so records straddle reads."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(
    data: bytes, fmt: CsvFormat | None = None, rows_per_block: int = 2
) -> tuple[list[str], list[RowBlock]]:
    async with CsvReader(body(data), fmt or CsvFormat(), rows_per_block) as reader:
        return reader.header, [block async for block in reader.blocks()]


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


async def test_broken_rows_fail_alone() -> None:
    data = (
        b"email,name\na@x.io,A\nb@x.io,B,extra\n\xff\xfe@x.io,C\nd@x.io,"
        + b"x" * 70_000
        + b"\ne@x.io\n"
    )
    _, blocks = await read(data, rows_per_block=10)
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
