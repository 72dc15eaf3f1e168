"""Streamed CSV: bytes from the request in, blocks of parsed rows out, as columns.

Parsing runs on a thread of its own: the request body reaches it through a
bounded queue and parsed blocks come back through another. Memory holds a few
blocks at a time whatever the file size. A block's rows are
:class:`~schemas.cells.Cells` of kind TEXT: no row becomes a dict on the way
to Kafka.

Two parsers read the same rows. A UTF-8 body is cut into regions of whole
records and Arrow parses each region at once, where it reads it exactly as
``csv`` would (``csv_regions``); anything else (another encoding, a region
Arrow would read differently, the rest of a file whose records cannot be cut
plainly) goes through the stdlib ``csv`` module, row by row, which has every
rule below.

A header's trailing empty columns (``email,name,,``, as spreadsheets export a
sheet with formatted but empty columns) are not columns: they and their empty
cells are dropped. A failed-rows export sent back (it has the ``row_no`` and
``error`` columns) has the ``'`` that neutralised its formula-like cells
removed again (see :func:`escape_formula`), so its values are the ones first sent.

Row numbers count data rows (the header excluded, blank lines skipped), so they
stay stable when fields contain newlines. A row that cannot be read (invalid
bytes for the encoding, more fields than the header, an oversized field) comes
back as a :class:`RowProblem` in its place, with the values it had, and the rest
of the file goes on. A record whose end cannot be found (longer than
``MAX_RECORD_CHARS``, a quote still open at the end of the file, a syntax error)
rejects the file from there: where the next row starts is then unknowable.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import janus
import numpy as np
import pyarrow as pa

from bulkflow import constants
from ingest_api.csv_regions import REGION_BYTES, Columns, Regions, header_end, read_columns
from schemas.bulk_action import column_key
from schemas.cells import CellKind, Cells
from schemas.entity import DOWNLOAD_COLUMNS
from schemas.messages import RowProblem

_QUEUE_BLOCKS = 16  # request body blocks (~64 KiB each) waiting for the parser
_QUEUE_PARSED = 4  # parsed blocks waiting for the producer
_EOF = b""

_CUT_MARK = "\u2026"  # ends a value cut for the export: it stays too long to re-import
_EXTRA_SHOWN = 200  # characters of surplus fields quoted in a too_many_fields message
# What errors="surrogateescape" makes of invalid bytes (and utf-7 of a lone
# surrogate): no JSON encoder takes them, so a broken row shows U+FFFD instead.
_SURROGATES = re.compile("[\ud800-\udfff]")

# A cell a spreadsheet would run as a formula starts with one of these (OWASP's
# list); one that starts with quotes and then one of them gets one quote more,
# so that removing one quote from a cell matching _ESCAPED is exact.
_NEEDS_ESCAPE = re.compile("'*[=+\\-@\t\r]")
_ESCAPED = re.compile("'+[=+\\-@\t\r]")


def escape_formula(value: str) -> str:
    """The cell as a failed-rows export writes it: a spreadsheet shows it, never runs it.

    ``=HYPERLINK(...)``, ``@SUM(1+1)``, ``+1+1``, but also ``-5`` and
    ``+44 20 7946 0000``, get a leading ``'``; :func:`unescape_formula` takes it
    off when the export comes back, so every value round-trips unchanged.
    """
    return "'" + value if _NEEDS_ESCAPE.match(value) else value


def unescape_formula(value: str) -> str:
    """The value :func:`escape_formula` was given."""
    return value[1:] if value[:1] == "'" and _ESCAPED.match(value) else value


# The csv module's limit is process-wide and MAX_RECORD_CHARS is checked before
# the parser sees a line, so the module's own limit is never the one reached.
csv.field_size_limit(max(csv.field_size_limit(), constants.MAX_RECORD_CHARS))


class CsvRejected(Exception):
    """The file cannot be read (from some row on): nothing more of it is queued."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _RecordUnreadable(Exception):
    """Raised by the line source through csv.reader: the record has no findable end."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class RowBlock:
    """Consecutive data rows; ``broken`` rows hold their values as read, cut to size."""

    first_row_no: int
    rows: Cells
    broken: dict[int, RowProblem] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Header:
    names: list[str]
    raw_width: int  # fields of the header record, its trailing empty ones too
    export: bool  # a failed-rows export sent back: its cells lose their escapes


class _ColumnBlocks:
    """Arrow's rows as blocks, cut as the row-by-row loop cuts them: by rows, by characters.

    A region's last rows wait for the next region's first, so regions do not
    make short chunks; rows read row by row in between are preceded by a flush.
    """

    def __init__(self, out: janus.SyncQueue[Any], rows_per_block: int) -> None:
        self._out = out
        self._rows_per_block = rows_per_block
        self._parts: list[pa.RecordBatch] = []
        self._first_row_no = 1
        self._rows = self._chars = 0

    def add(self, columns: Columns, first_row_no: int) -> None:
        if not self._parts:
            self._first_row_no = first_row_no
        start, total = 0, len(columns.chars)
        while start < total:
            room = min(self._rows_per_block - self._rows, total - start)
            spent = self._chars + np.cumsum(columns.chars[start : start + room])
            full = np.flatnonzero(spent >= constants.MAX_CHUNK_CHARS)
            take = int(full[0]) + 1 if len(full) else room
            self._parts.append(columns.batch.slice(start, take))
            self._rows += take
            self._chars = int(spent[take - 1])
            start += take
            if self._rows == self._rows_per_block or self._chars >= constants.MAX_CHUNK_CHARS:
                self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        batch = self._parts[0] if len(self._parts) == 1 else pa.concat_batches(self._parts)
        self._out.put(RowBlock(self._first_row_no, Cells(batch, CellKind.TEXT)))
        self._first_row_no += self._rows
        self._parts, self._rows, self._chars = [], 0, 0


@dataclass(frozen=True, slots=True)
class CsvFormat:
    encoding: str = "utf-8"
    delimiter: str = ","

    def validate(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise CsvRejected("unknown_encoding", f"unknown encoding {self.encoding!r}") from None
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            raise CsvRejected("invalid_delimiter", "delimiter must be one character")

    @property
    def cut_in_regions(self) -> bool:
        """Whether the bytes can be cut and parsed as they come (``csv_regions``):
        UTF-8, and a delimiter of one byte that Arrow takes (not NUL)."""
        utf8 = codecs.lookup(self.encoding).name == "utf-8"
        return utf8 and self.delimiter.isascii() and self.delimiter != "\x00"


class _BodyReader(io.RawIOBase):
    """A blocking file over the queue of body blocks, for TextIOWrapper."""

    def __init__(self, blocks: janus.SyncQueue[bytes], pending: bytes, eof: bool) -> None:
        self._blocks = blocks
        self._pending = pending  # bytes already taken from the queue, read first
        self._eof = eof

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            block = self._blocks.get()
            self._eof = block == _EOF
            self._pending = block
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Lines:
    """The text's lines for csv.reader, at most MAX_RECORD_CHARS characters per record.

    csv.reader takes a whole line however long, and keeps taking lines while a
    quote is open: a line without a newline, or one stray quote, would otherwise
    hold the rest of the upload in memory. The parse loop sets ``used = 0`` each
    time csv.reader returns a record.
    """

    __slots__ = ("_at_start", "_readline", "used")

    def __init__(self, text: io.TextIOBase, at_start: bool) -> None:
        self._readline = text.readline
        self._at_start = at_start  # the text starts the file: it may start with a mark
        self.used = 0  # characters of the record being read

    def __iter__(self) -> Iterator[str]:
        readline = self._readline
        # A byte-order mark the codec keeps (utf-8, utf-16-le, utf-16-be) is not
        # part of the first column name.
        line = readline(constants.MAX_RECORD_CHARS + 1)
        if self._at_start:
            line = line.removeprefix("\ufeff")
        while line:
            self.used += len(line)
            if self.used > constants.MAX_RECORD_CHARS:
                raise _RecordUnreadable(
                    "record_too_long",
                    f"longer than {constants.MAX_RECORD_CHARS:,} characters"
                    " (is a quote opened in it never closed?)",
                )
            yield line
            line = readline(constants.MAX_RECORD_CHARS + 1 - self.used)
        if self.used:  # csv.reader asked for more of a record: a quoted field is open
            raise _RecordUnreadable(
                "unclosed_quote", "a quoted field is not closed before the end of the file"
            )


class CsvReader:
    """``async with CsvReader(body, fmt) as reader``: ``header``, then ``blocks()``."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        fmt: CsvFormat,
        rows_per_block: int,
        *,
        region_bytes: int = REGION_BYTES,
    ) -> None:
        fmt.validate()
        self._body = body
        self._format = fmt
        self._rows_per_block = rows_per_block
        self._region_bytes = region_bytes  # cut and parsed at once, for a UTF-8 body
        self._blocks: janus.Queue[bytes] = janus.Queue(maxsize=_QUEUE_BLOCKS)
        self._parsed: janus.Queue[list[str] | RowBlock | CsvRejected | None] = janus.Queue(
            maxsize=_QUEUE_PARSED
        )
        self._thread = threading.Thread(target=self._parse, name="csv-reader", daemon=True)
        self._columns = _ColumnBlocks(self._parsed.sync_q, rows_per_block)
        self.header: list[str] = []
        self.rows_read = 0

    async def __aenter__(self) -> Self:
        self._thread.start()
        self._feeder = asyncio.create_task(self._feed())
        first = await self._parsed.async_q.get()
        if isinstance(first, CsvRejected):
            await self._close()
            raise first
        if not isinstance(first, list):
            await self._close()
            raise CsvRejected("empty_file", "the file has no header row")
        self.header = first
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self._feeder.cancel()
        self._blocks.shutdown(immediate=True)
        self._parsed.shutdown(immediate=True)
        await self._blocks.aclose()
        await self._parsed.aclose()

    async def _feed(self) -> None:
        try:
            async for block in self._body:
                if block:
                    await self._blocks.async_q.put(block)
            await self._blocks.async_q.put(_EOF)
        except janus.AsyncQueueShutDown:
            pass
        except Exception as exc:  # the client went away: unblock the parser, report it
            await self._parsed.async_q.put(CsvRejected("upload_interrupted", str(exc) or repr(exc)))
            self._blocks.shutdown(immediate=True)

    async def blocks(self) -> AsyncIterator[RowBlock]:
        while True:
            item = await self._parsed.async_q.get()
            if item is None:
                return
            if isinstance(item, CsvRejected):
                raise item
            assert isinstance(item, RowBlock)
            self.rows_read += len(item.rows)
            yield item

    # --- the parser thread -------------------------------------------------

    def _parse(self) -> None:
        try:
            self._parse_rows()
            self._end(None)
        except CsvRejected as exc:
            self._end(exc)
        except (janus.SyncQueueShutDown, janus.AsyncQueueShutDown):
            pass  # the request ended first
        except Exception as exc:  # never leave the request waiting on a dead thread
            self._end(CsvRejected("invalid_csv", f"the file cannot be read: {exc}"))

    def _end(self, item: CsvRejected | None) -> None:
        try:
            self._parsed.sync_q.put(item)
        except (janus.SyncQueueShutDown, janus.AsyncQueueShutDown):
            pass

    def _parse_rows(self) -> None:
        """Regions of whole records while they can be cut; then the rest as a stream."""
        if not self._format.cut_in_regions:
            self._read_stream(b"", at_end=False, header=None, row_no=0)
            return
        regions = Regions(self._blocks.sync_q, self._format.delimiter, self._region_bytes)
        header: _Header | None = None
        row_no = 0
        for data in regions:
            if header is None:
                data = data.lstrip(b"\r\n")  # blank lines before the header are not records
                if not data:
                    continue
                end = header_end(data)
                header, row_no = self._read_first(data[:end])
                data = data[end:]
            assert header is not None
            row_no = self._read_region(data, header, row_no)
        self._columns.flush()
        if header is None or regions.rest:
            self._read_stream(regions.rest, regions.at_end, header, row_no)

    def _read_first(self, data: bytes) -> tuple[_Header, int]:
        """The header, from the first record; and the rows the same bytes hold."""
        reader, lines = self._records(data)
        header = self._read_header(reader, lines)
        self._parsed.sync_q.put(header.names)
        return header, self._read_rows(reader, lines, header.names, 0)

    def _read_region(self, data: bytes, header: _Header, row_no: int) -> int:
        """A region's rows, by Arrow where it reads them as csv.reader would."""
        columns = None
        if not header.export:
            columns = read_columns(data, header.names, header.raw_width, self._format.delimiter)
        if columns is None:
            self._columns.flush()
            return self._read_rows(*self._records(data), header.names, row_no)
        self._columns.add(columns, row_no + 1)
        return row_no + len(columns.chars)

    def _records(self, data: bytes) -> tuple[Iterator[list[str]], _Lines]:
        """csv.reader over a region's UTF-8 bytes (its byte-order mark already gone)."""
        text = io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")
        lines = _Lines(text, at_start=False)
        return csv.reader(lines, delimiter=self._format.delimiter), lines

    def _read_stream(
        self, pending: bytes, at_end: bool, header: _Header | None, row_no: int
    ) -> None:
        """The rest of the body, row by row, from a record's start."""
        text = io.TextIOWrapper(
            io.BufferedReader(
                _BodyReader(self._blocks.sync_q, pending, at_end), buffer_size=1 << 16
            ),
            encoding=self._format.encoding,
            errors="surrogateescape",
            newline="",
        )
        lines = _Lines(text, at_start=header is None)
        reader = csv.reader(lines, delimiter=self._format.delimiter)
        if header is None:
            header = self._read_header(reader, lines)
            self._parsed.sync_q.put(header.names)
        self._read_rows(reader, lines, header.names, row_no)

    def _read_rows(
        self, reader: Iterator[list[str]], lines: _Lines, header: list[str], row_no: int
    ) -> int:
        """Put out blocks of the rows after ``row_no``; the last row's number."""
        # The hot loop (a million rows per upload): locals, the checks inline,
        # and each record kept as the list csv.reader made; the block's columns
        # are built from them in one go (Cells.from_records).
        out, rows_per_block, width = self._parsed.sync_q, self._rows_per_block, len(header)
        unescape = _is_export(header)
        # Characters a row costs in a chunk beyond its values: the column names.
        per_row, max_chars = sum(len(name) + 6 for name in header), constants.MAX_CHUNK_CHARS
        max_field = constants.MAX_FIELD_CHARS
        absent: list[Any] = [None] * width  # pads a short record: its values are absent
        records: list[Sequence[str | None]] = []
        broken: dict[int, RowProblem] = {}
        first_row_no = row_no + 1
        chars = 0
        try:
            for record in reader:
                used = lines.used
                chars += used + per_row
                lines.used = 0  # the record ended: the next one has the whole budget
                if not record:
                    continue  # a blank line is not a row
                row_no += 1
                if len(record) > width and not any(record[width:]):
                    del record[width:]  # the cells of trailing empty header columns
                if unescape:
                    record = list(map(unescape_formula, record))
                if (
                    len(record) <= width
                    # A record no longer than a field cannot hold a field too long.
                    and (used <= max_field or max(map(len, record)) <= max_field)
                    # isascii() first: most rows, and no call for them.
                    and ((text := "".join(record)).isascii() or not _has_invalid_bytes(text))
                ):
                    if len(record) < width:  # fewer fields than the header are fine
                        record += absent[len(record) :]
                    records.append(record)
                else:
                    broken[len(records)] = _problem(header, record)
                    records.append(_as_sent(header, record))
                if len(records) == rows_per_block or chars >= max_chars:
                    out.put(RowBlock(first_row_no, Cells.from_records(header, records), broken))
                    first_row_no, records, broken = row_no + 1, [], {}
                    chars = 0
        except _RecordUnreadable as exc:
            raise CsvRejected(exc.code, f"row {row_no + 1}: {exc.reason}") from None
        except csv.Error as exc:
            # The parser resumes at the next line, which may be inside the field.
            raise CsvRejected(
                "invalid_csv", f"row {row_no + 1}: {exc}; the rows after it cannot be found"
            ) from None
        if records:
            out.put(RowBlock(first_row_no, Cells.from_records(header, records), broken))
        return row_no

    def _read_header(self, reader: Iterator[list[str]], lines: _Lines) -> _Header:
        try:
            for record in reader:
                lines.used = 0
                if record:
                    break
            else:
                raise CsvRejected("empty_file", "the file is empty")
        except _RecordUnreadable as exc:
            raise CsvRejected(exc.code, f"the header row: {exc.reason}") from None
        except csv.Error as exc:
            raise CsvRejected("invalid_csv", f"the header row cannot be read: {exc}") from None
        header = _checked_header(record, self._format.encoding)
        return _Header(header, len(record), _is_export(header))


def _checked_header(record: list[str], encoding: str) -> list[str]:
    """The column names, from the header record; a header no file can have is refused."""
    header = [name.strip() for name in record]
    while header and not header[-1]:
        header.pop()  # trailing empty columns, as spreadsheets export them
    if _is_export(header):
        header = [unescape_formula(name) for name in header]
    if any(_has_invalid_bytes(name) for name in header):
        raise CsvRejected("invalid_encoding", f"the header is not valid {encoding}")
    if len(header) > constants.MAX_CSV_COLUMNS:
        raise CsvRejected(
            "too_many_columns",
            f"the header has {len(header):,} columns;"
            f" at most {constants.MAX_CSV_COLUMNS:,} are accepted",
        )
    if not header:
        raise CsvRejected("invalid_header", "the header names no column")
    if any(not name for name in header):
        raise CsvRejected("invalid_header", "a header column is empty (only trailing ones may be)")
    keys = [column_key(name) for name in header]
    if len(set(keys)) != len(keys):
        raise CsvRejected(
            "invalid_header", "header column names repeat (case, spaces, - and _ aside)"
        )
    return header


def _is_export(header: list[str]) -> bool:
    """Whether the file is a failed-rows export sent back (its cells have escapes)."""
    return {column_key(name) for name in header} >= DOWNLOAD_COLUMNS


def _has_invalid_bytes(value: str) -> bool:
    if value.isascii():  # most values, and O(1): no need to encode them
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem(header: list[str], record: list[str]) -> RowProblem:
    """Why a record is not a row; the checks of the parse loop, in the same order."""
    if len(record) > len(header):
        # Enough values to fill the message, however many there are.
        extra = [_text(value) for value in record[len(header) :][:_EXTRA_SHOWN]]
        return RowProblem(
            "too_many_fields",
            f"{len(record)} fields for {len(header)} header columns;"
            f" beyond them: {_cut(repr(extra), _EXTRA_SHOWN)}",
        )
    for name, value in zip(header, record, strict=False):
        if len(value) > constants.MAX_FIELD_CHARS:
            return RowProblem(
                "field_too_long", f"{name}: longer than {constants.MAX_FIELD_CHARS} characters"
            )
    return RowProblem("invalid_encoding", "the row has bytes that are not valid text")


def _as_sent(header: list[str], record: list[str]) -> list[str | None]:
    """A broken row's values, for its failed-rows export: valid text, a bounded size.

    A value over MAX_FIELD_CHARS keeps its start and a mark, so the export
    stays the size of valid rows and still fails if sent back unchanged. Fields
    beyond the header have no column: the problem's message quotes them.
    """
    values: list[str | None] = [
        _cut(_text(value), constants.MAX_FIELD_CHARS) for value in record[: len(header)]
    ]
    return values + [None] * (len(header) - len(values))


def _text(value: str) -> str:
    return _SURROGATES.sub("\ufffd", value)


def _cut(value: str, size: int) -> str:
    return value if len(value) <= size else value[:size] + _CUT_MARK
