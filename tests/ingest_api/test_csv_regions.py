"""Arrow reads a region's rows only where csv.reader would read the same rows."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bulkflow import constants
from ingest_api import csv_regions
from ingest_api.csv_reader import CsvFormat, CsvReader, CsvRejected, RowBlock
from ingest_api.csv_regions import header_end, is_plain, plain_pattern
from schemas.cells import Cells
from schemas.messages import Chunk

pytestmark = pytest.mark.anyio

PLAIN = plain_pattern(",")


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        (b"a,b\nc,d\n", True),
        (b'"a,b","c\nd"\r\n"",e\r\n', True),  # delimiters, newlines, an empty quoted field
        (b'"say ""hi""",x\n"""",y\n', True),  # doubled quotes, a value that is one quote
        (b'"a",b\n"c"', True),  # no newline at the end
        (b'a,b"c\n', False),  # a quote inside an unquoted value: csv keeps it
        (b'"ab"c,d\n', False),  # text after the closing quote: csv appends it
        (b'a,"b\n', False),  # a quote not closed in the region
        (b' "a",b\n', False),  # a space before the quote: csv keeps both
    ],
)
def test_plain_quoting_is_told_apart(data: bytes, plain: bool) -> None:
    assert is_plain(PLAIN, data) is plain


def test_the_header_ends_at_its_first_newline_outside_quotes() -> None:
    assert header_end(b'email,"two\nlines"\na@x.io,b\n') == len(b'email,"two\nlines"\n')
    assert header_end(b"email,name") == len(b"email,name")


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(data: bytes, fmt: CsvFormat, region: int, piece: int) -> Any:
    """Header and rows with their numbers and problems; or the rejection."""
    try:
        async with CsvReader(pieces(data, piece), fmt, 3, region_bytes=region) as reader:
            blocks = [block async for block in reader.blocks()]
            return reader.header, _rows(blocks)
    except CsvRejected as exc:
        return exc.code, exc.message


def _rows(blocks: list[RowBlock]) -> list[tuple[int, dict[str, str], Any]]:
    assert [b.first_row_no for b in blocks] == sorted({b.first_row_no for b in blocks})
    return [
        (block.first_row_no + i, row, block.broken.get(i))
        for block in blocks
        for i, row in enumerate(block.rows)
    ]


_VALUES = ["a@x.io", "Ada", "", " ", "é", "x,y;z", 'say "hi"', "two\nlines", "cr\r\nlf", "\x00"]
_ODD = [b'ab"c', b'"ab"c', b'"open', b"\xff\xfe", b"  ", b"z" * 40]


def _random_csv(rng: random.Random, delimiter: bytes) -> bytes:
    """A file from pieces that csv and Arrow agree on, and pieces they do not."""
    width = rng.randint(1, 4)
    trailing = rng.choice([0, 0, 2])
    newline = rng.choice([b"\n", b"\r\n", b"\n", b"\r\n", b"\r"])
    lines = [delimiter.join([f"col{i}".encode() for i in range(width)] + [b""] * trailing)]
    for _ in range(rng.randint(0, 30)):
        draw = rng.random()
        if draw < 0.05:
            lines.append(b"")  # a blank line
            continue
        fields = rng.choice([width, width, width, width + trailing, width - 1, width + 1])
        cells = []
        for _ in range(max(fields, 1)):
            value = rng.choice(_VALUES).encode()
            if rng.random() < 0.03:
                cells.append(rng.choice(_ODD))
            elif rng.random() < 0.4 or any(c in value for c in b'"\r\n' + delimiter):
                cells.append(b'"' + value.replace(b'"', b'""') + b'"')
            else:
                cells.append(value)
        lines.append(delimiter.join(cells))
    data = newline.join(lines) + rng.choice([newline, b""])
    return rng.choice([b"", b"\xef\xbb\xbf", b"\n"]) + data


@pytest.mark.parametrize("seed", range(100))
async def test_regions_read_what_the_row_by_row_reader_reads(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    fmt = CsvFormat(delimiter=rng.choice([",", ",", ";", "\t", "\x00"]))
    files = [_random_csv(rng, fmt.delimiter.encode()) for _ in range(10)]
    cut = [await read_all(f, fmt, rng.randint(8, 300), rng.randint(1, 64)) for f in files]
    monkeypatch.setattr(CsvFormat, "cut_in_regions", property(lambda _: False))
    whole = [await read_all(f, fmt, 0, 7) for f in files]
    for data, by_regions, by_rows in zip(files, cut, whole, strict=True):
        assert by_regions == by_rows, data


async def test_plain_regions_are_read_by_arrow_in_whole_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path is taken, and regions do not cut blocks short."""
    read = csv_regions.read_columns
    taken: list[bool] = []

    def spy(*args: Any) -> Any:
        columns = read(*args)
        taken.append(columns is not None)
        return columns

    monkeypatch.setattr("ingest_api.csv_reader.read_columns", spy)
    rows = [f'u{i}@x.io,"Name {i}, Jr."\n'.encode() for i in range(1_000)]
    data = b"email,name\n" + b"".join(rows)
    async with CsvReader(pieces(data, 999), CsvFormat(), 100, region_bytes=4096) as reader:
        blocks = [block async for block in reader.blocks()]
    assert len(taken) > 5
    assert all(taken)
    assert [len(b.rows) for b in blocks] == [100] * 10
    assert blocks[3].rows[5] == {"email": "u305@x.io", "name": "Name 305, Jr."}


async def test_wide_rows_read_by_arrow_make_blocks_under_the_message_limit() -> None:
    names = [f"column_{i}" for i in range(999)]
    row = b"a@x.io" + b",value" * len(names) + b"\n"
    data = ",".join(["email", *names]).encode() + b"\n" + row * 200
    async with CsvReader(pieces(data, 1 << 16), CsvFormat(), 500) as reader:
        blocks = [block async for block in reader.blocks()]
    assert sum(len(b.rows) for b in blocks) == 200
    assert len(blocks) > 1
    for block in blocks:
        assert block.rows.batch.nbytes < constants.CHUNK_TARGET_BYTES
        # A block is a slice of its region's columns: only its own rows travel.
        alone = Cells.from_records(block.rows.names, [list(row.values()) for row in block.rows])
        sizes = [
            len(Chunk("a", "acc", "contact", "upsert", 0, 1, cells).to_bytes())
            for cells in (block.rows, alone)
        ]
        assert sizes[0] < sizes[1] + 1024 < 1_000_000  # padding aside


def test_reading_a_csv_does_not_import_pandas() -> None:
    """pyarrow imports pandas for some conversions: 36 MB more in every API process."""
    script = """
import asyncio, sys
from ingest_api.csv_reader import CsvFormat, CsvReader

async def body():
    yield b'email,name\\n"a@x.io",A\\nb@x.io,"B, Jr."\\nc@x.io,C,extra\\n'

async def main():
    async with CsvReader(body(), CsvFormat(), 500) as reader:
        assert sum([len(block.rows) async for block in reader.blocks()]) == 3

asyncio.run(main())
assert "pandas" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
