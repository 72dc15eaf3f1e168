"""Streamed CSV: bytes from the request in, blocks of parsed rows out.

The stdlib ``csv`` module parses well (quoted delimiters, quotes, newlines in
fields) but pulls its input synchronously, so it runs on a thread of its own:
the request body reaches it through a bounded queue and parsed blocks come back
through another. Memory holds a few blocks at a time whatever the file size.

Row numbers count data rows (the header excluded, blank lines skipped), so they
stay stable when fields contain newlines. A row that cannot be read (invalid
bytes for the encoding, more fields than the header, an oversized field) comes
back as a :class:`RowProblem` in its place; the rest of the file goes on.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import janus

from bulkflow import constants
from schemas.bulk_action import column_key
from schemas.messages import JsonRow, RowProblem

_QUEUE_BLOCKS = 16  # request body blocks (~64 KiB each) waiting for the parser
_QUEUE_PARSED = 4  # parsed blocks waiting for the producer
_EOF = b""

# The csv module's limit is process-wide; rows over MAX_FIELD_BYTES are failed
# by the reader itself, so the module's own limit only guards against abuse.
csv.field_size_limit(max(csv.field_size_limit(), 16 * constants.MAX_FIELD_BYTES))


class CsvRejected(Exception):
    """The file as a whole cannot be read; nothing of it is queued."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class RowBlock:
    """Consecutive data rows; ``broken`` rows are placeholders ({}) with a problem."""

    first_row_no: int
    rows: list[JsonRow] = field(default_factory=list)
    broken: dict[int, RowProblem] = field(default_factory=dict)


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


class _BodyReader(io.RawIOBase):
    """A blocking file over the queue of body blocks, for TextIOWrapper."""

    def __init__(self, blocks: janus.SyncQueue[bytes]) -> None:
        self._blocks = blocks
        self._pending = b""
        self._eof = False

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


class CsvReader:
    """``async with CsvReader(body, fmt) as reader``: ``header``, then ``blocks()``."""

    def __init__(self, body: AsyncIterator[bytes], fmt: CsvFormat, rows_per_block: int) -> None:
        fmt.validate()
        self._body = body
        self._format = fmt
        self._rows_per_block = rows_per_block
        self._blocks: janus.Queue[bytes] = janus.Queue(maxsize=_QUEUE_BLOCKS)
        self._parsed: janus.Queue[list[str] | RowBlock | CsvRejected | None] = janus.Queue(
            maxsize=_QUEUE_PARSED
        )
        self._thread = threading.Thread(target=self._parse, name="csv-reader", daemon=True)
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
        except (janus.SyncQueueShutDown, janus.AsyncQueueShutDown):
            pass  # the request ended first
        except Exception as exc:  # never leave the request waiting on a dead thread
            try:
                self._parsed.sync_q.put(
                    CsvRejected("invalid_csv", f"the file cannot be read: {exc}")
                )
            except (janus.SyncQueueShutDown, janus.AsyncQueueShutDown):
                pass

    def _parse_rows(self) -> None:
        encoding = self._format.encoding
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # drops an Excel byte-order mark if there is one
        text = io.TextIOWrapper(
            io.BufferedReader(_BodyReader(self._blocks.sync_q), buffer_size=1 << 16),
            encoding=encoding,
            errors="surrogateescape",
            newline="",
        )
        reader = csv.reader(text, delimiter=self._format.delimiter)
        out = self._parsed.sync_q
        header = self._read_header(reader)
        if isinstance(header, CsvRejected):
            out.put(header)
            return
        out.put(header)
        block = RowBlock(first_row_no=1)
        row_no = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                record = None
                problem = RowProblem("unreadable_row", f"CSV syntax: {exc}")
            if record == []:
                continue  # a blank line is not a row
            row_no += 1
            if record is not None:
                row, problem_or_none = _row(header, record)
                if problem_or_none is None:
                    block.rows.append(row)
                else:
                    block.broken[len(block.rows)] = problem_or_none
                    block.rows.append({})
            else:
                block.broken[len(block.rows)] = problem
                block.rows.append({})
            if len(block.rows) == self._rows_per_block:
                out.put(block)
                block = RowBlock(first_row_no=row_no + 1)
        if block.rows:
            out.put(block)
        out.put(None)

    def _read_header(self, reader: Iterator[list[str]]) -> list[str] | CsvRejected:
        try:
            while True:
                record = next(reader)
                if record:
                    break
        except StopIteration:
            return CsvRejected("empty_file", "the file is empty")
        except csv.Error as exc:
            return CsvRejected("invalid_csv", f"the header row cannot be read: {exc}")
        header = [name.strip() for name in record]
        if any(_has_invalid_bytes(name) for name in header):
            return CsvRejected(
                "invalid_encoding", f"the header is not valid {self._format.encoding}"
            )
        if len(header) > constants.MAX_CSV_COLUMNS:
            return CsvRejected("too_many_columns", f"more than {constants.MAX_CSV_COLUMNS} columns")
        if any(not name for name in header):
            return CsvRejected("invalid_header", "a header column is empty")
        keys = [column_key(name) for name in header]
        if len(set(keys)) != len(keys):
            return CsvRejected(
                "invalid_header", "header column names repeat (case, spaces, - and _ aside)"
            )
        return header


def _has_invalid_bytes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _row(header: list[str], record: list[str]) -> tuple[JsonRow, RowProblem | None]:
    if len(record) > len(header):
        return {}, RowProblem(
            "too_many_fields", f"{len(record)} fields for {len(header)} header columns"
        )
    for index, value in enumerate(record):
        if len(value) > constants.MAX_FIELD_BYTES:
            return {}, RowProblem(
                "field_too_long",
                f"{header[index]}: longer than {constants.MAX_FIELD_BYTES} characters",
            )
    if _has_invalid_bytes("".join(record)):
        return {}, RowProblem("invalid_encoding", "the row has bytes that are not valid text")
    return dict(zip(header, record, strict=False)), None
