"""A UTF-8 CSV's records, cut from its bytes in regions, and read by Arrow where it can.

``csv.reader`` (with the line reader and the checks around it) took ~2.8 µs
of the API's CPU a row of the bench's file; Arrow's CSV parser, region by
region, ~0.5. They read the same file the same way only where
its quoting is plain: every field either holds no quote, or is quoted whole
(``"…"``, a quote inside doubled) and followed by the delimiter or the line's
end. Python's ``csv`` reads other quotes its own way (``ab"c`` is a value,
``"ab"c`` is ``abc``), so a region is given to Arrow only when it is plain
(:func:`is_plain`, one RE2 match over its bytes), and only whole records: a
region ends at a newline outside quotes.

Whatever else could make the two readers differ sends the region back to the
row-by-row reader, which has every rule (:func:`read_columns` returns None):
rows wider or narrower than the header, bytes that are not UTF-8, a value over
a field limit, values under the header's trailing empty columns. The rows come
out the same; only the CPU differs.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

import janus
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from bulkflow import constants

#: Bytes of the body cut into one region, read by Arrow in one call: ~1,800
#: of the bench's rows (a call's cost is mostly per call; larger regions took
#: the API's peak memory up more than its CPU down). Below MAX_RECORD_CHARS,
#: so a region never holds a record the row-by-row reader would have refused.
REGION_BYTES = 128 * 1024
assert REGION_BYTES < constants.MAX_RECORD_CHARS

#: How far back from a region's end to look for a newline outside quotes
#: (each step passes over one quoted run): further back, the region is left to
#: the row-by-row reader.
_CUT_STEPS = 64
_BOM = b"\xef\xbb\xbf"
_EOF = b""


class Regions:
    """The body's bytes as regions of whole, plainly quoted records.

    Iterating yields regions until the end of the body, or until the next
    record cannot be cut plainly (an unplain quote, a record longer than a
    region): then ``rest`` holds the bytes not yet read, for the row-by-row
    reader to take from there, with the blocks still queued after them.
    """

    def __init__(
        self, blocks: janus.SyncQueue[bytes], delimiter: str, size: int = REGION_BYTES
    ) -> None:
        self._blocks = blocks
        self._size = size
        self._plain = plain_pattern(delimiter)
        self._eof = False
        self.rest = b""

    @property
    def at_end(self) -> bool:
        """Whether the body's last block was taken from the queue."""
        return self._eof

    def __iter__(self) -> Iterator[bytes]:
        pending = self._fill(b"").removeprefix(_BOM)
        while pending:
            if self._eof and len(pending) <= self._size:
                end: int | None = len(pending) if is_plain(self._plain, pending) else None
            else:
                end = self._cut(pending[: self._size])
            if end is None:
                self.rest = pending
                return
            yield pending[:end]
            pending = self._fill(pending[end:])

    def _fill(self, pending: bytes) -> bytes:
        parts = [pending]
        size = len(pending)
        while size <= self._size and not self._eof:
            block = self._blocks.get()
            self._eof = block == _EOF
            parts.append(block)
            size += len(block)
        return b"".join(parts)

    def _cut(self, window: bytes) -> int | None:
        """The end of the window's last whole record, if the records before it are plain."""
        newline = window.rfind(b"\n")
        quotes = window.count(b'"', 0, newline)
        for _ in range(_CUT_STEPS):
            if newline < 0:
                return None
            if quotes % 2 == 0:  # outside quotes, if the region is plain: checked next
                return newline + 1 if is_plain(self._plain, window[: newline + 1]) else None
            # Inside a quoted field: its opening quote is at or before the last quote.
            earlier = window.rfind(b"\n", 0, window.rfind(b'"', 0, newline))
            quotes -= window.count(b'"', max(earlier, 0), newline)
            newline = earlier
        return None


def plain_pattern(delimiter: str) -> str:
    """RE2's pattern for bytes that are plainly quoted records (see the module)."""
    d = re.escape(delimiter)
    field = f'(?:"(?:[^"]|"")*"|[^"{d}\\r\\n]*)'
    record = f"{field}(?:{d}{field})*"
    return f"^(?:{record}(?:\\r\\n|\\n|\\r))*(?:{record})?$"


def is_plain(pattern: str, data: bytes) -> bool:
    # RE2 runs in time linear in the bytes (~0.1 µs a row); a quote-free
    # region needs no look at all.
    if b'"' not in data:
        return True
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    region = pa.BinaryArray.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])
    return bool(pc.match_substring_regex(region, pattern)[0].as_py())


def header_end(region: bytes) -> int:
    """Where the header record ends in a file's first region (plain: quotes pair up)."""
    newline = region.find(b"\n")
    while newline >= 0 and region.count(b'"', 0, newline) % 2:
        newline = region.find(b"\n", newline + 1)
    return newline + 1 if newline >= 0 else len(region)


@dataclass(frozen=True, slots=True)
class Columns:
    """A region's rows as the header's columns, and what each row counts towards a chunk."""

    batch: pa.RecordBatch
    chars: np.ndarray  # characters per row: values, separators and the chunk's column names


def read_columns(data: bytes, header: list[str], raw_width: int, delimiter: str) -> Columns | None:
    """The region's rows by Arrow, or None where only the row-by-row reader reads them right.

    ``raw_width`` counts the header's trailing empty columns too: a row of that
    many fields is what Arrow reads, and those columns must be empty.
    """
    names = [f"c{i}" for i in range(raw_width)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(
                column_names=names, use_threads=False, block_size=len(data) + 1
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                # Only a quoted value holds a newline; Arrow's parser for them
                # costs ~90 ns a row more (280 against 192, the bench's rows).
                newlines_in_values=b'"' in data,
                ignore_empty_lines=True,  # a row of another width is an error
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except pa.ArrowInvalid:  # a row of another width, bytes that are not UTF-8
        return None
    columns = [table.column(i).combine_chunks() for i in range(raw_width)]
    lengths = [pc.utf8_length(column) for column in columns]
    longest = [pc.max(length).as_py() or 0 for length in lengths]
    if any(longest[len(header) :]):
        return None  # a value under no column: the row fails alone (too_many_fields)
    # The shortest value the row-by-row reader does not take as it is: over
    # the field limit the row fails alone; at the csv module's, the file stops.
    too_long = min(constants.MAX_FIELD_CHARS + 1, csv.field_size_limit())
    if max(longest, default=0) >= too_long:
        return None
    chars = np.full(table.num_rows, raw_width + sum(len(name) + 6 for name in header))
    for length in lengths:
        chars += _values(length)
    return Columns(pa.RecordBatch.from_arrays(columns[: len(header)], names=header), chars)


def _values(lengths: pa.Int32Array) -> np.ndarray:
    """The lengths as numpy sees them, without a copy.

    Not ``to_numpy()``: its first call imports pandas (0.2 s, and ~36 MB in
    the API process, which never needs it).
    """
    data = lengths.buffers()[1]
    assert data is not None
    assert lengths.null_count == 0
    return np.frombuffer(data, dtype=np.int32, count=len(lengths), offset=lengths.offset * 4)
