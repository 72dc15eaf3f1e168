"""A chunk's input rows, column by column: how they travel and how they are validated.

Rows travel as one Arrow record batch of string columns, one per input
column; a null cell is a value the row does not give (a CSV row shorter than
the header, a JSON row without the key). Cells come in two kinds:

- ``TEXT``: the cell is the value itself, as a CSV file gives it;
- ``JSON``: the cell is the value's JSON text (``"Ada"``, ``42``, ``null``,
  ``{"tier": 1}``), as a JSON request gives it: types survive the trip.

Whole columns are what the agents validate (``schemas/column_reader.py``); a
row is made a dict only where Python has to look at it one row at a time
(:meth:`Cells.row`): rows that fail, and the echo of their input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from itertools import accumulate, chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

JsonRow = dict[str, Any]


class CellKind(StrEnum):
    TEXT = "text"
    JSON = "json"


class Cells(Sequence[JsonRow]):
    """Rows as columns; also a sequence of rows (dicts), made on demand."""

    __slots__ = ("_lists", "batch", "kind")

    def __init__(self, batch: pa.RecordBatch, kind: CellKind) -> None:
        self.batch = batch
        self.kind = kind
        self._lists: list[list[str | None]] | None = None

    @classmethod
    def from_records(cls, header: Sequence[str], records: Sequence[Sequence[str | None]]) -> Cells:
        """CSV records, each exactly as wide as the header (None: the row gives no value)."""
        columns = list(zip(*records)) if records else [()] * len(header)  # noqa: B905
        arrays = [_strings(column) for column in columns]
        return cls(pa.RecordBatch.from_arrays(arrays, names=list(header)), CellKind.TEXT)

    @classmethod
    def from_rows(cls, rows: Sequence[JsonRow]) -> Cells:
        """JSON rows: a column per key, in the order keys first appear."""
        names = list(dict.fromkeys(key for row in rows for key in row))
        dumps = orjson.dumps
        arrays = [
            _strings([dumps(row[name]).decode() if name in row else None for row in rows])
            for name in names
        ]
        if not names:  # rows without keys still count: a batch needs a column for its length
            return cls(_empty_rows(len(rows)), CellKind.JSON)
        return cls(pa.RecordBatch.from_arrays(arrays, names=names), CellKind.JSON)

    @classmethod
    def concat(cls, parts: Sequence[Cells]) -> Cells:
        """Cells of one kind and the same columns, one after the other."""
        if len(parts) == 1:
            return parts[0]
        return cls(pa.concat_batches([p.batch for p in parts]), parts[0].kind)

    @property
    def names(self) -> list[str]:
        return [name for name in self.batch.schema.names if name != _LENGTH_ONLY]

    def column(self, name: str) -> pa.StringArray:
        return self.batch.column(name)

    def slice(self, start: int, stop: int) -> Cells:
        return Cells(self.batch.slice(start, stop - start), self.kind)

    def row(self, index: int) -> JsonRow:
        """The row as the request gave it: only the values it gives."""
        return self.rows_at([index])[0]

    def rows_at(self, indexes: Sequence[int]) -> list[JsonRow]:
        """These rows as the request gave them (a few rows of many: only theirs are made)."""
        if self._lists is None and len(indexes) * 4 < len(self):
            return Cells.rows_of([(self, indexes)])
        return _as_rows(self.kind, self.names, self._columns(), indexes)

    @staticmethod
    def rows_of(picks: Sequence[tuple[Cells, Sequence[int]]]) -> list[JsonRow]:
        """The rows at these indexes of each cells, one after the other, as
        :meth:`rows_at` makes them: a few rows of each of many chunks.

        Each run of alike cells (one kind, the same columns) in one take: a
        take and a column's conversion cost about as much on a few rows as on
        hundreds.
        """
        rows: list[JsonRow] = []
        for run in _alike(picks):
            first = run[0][0]
            starts = accumulate((len(cells) for cells, _ in run), initial=0)
            taken = np.fromiter(
                chain.from_iterable(
                    map(start.__add__, indexes)
                    for start, (_, indexes) in zip(starts, run, strict=False)
                ),
                np.int64,
            )
            picked = pa.Table.from_batches([cells.batch for cells, _ in run]).take(taken)
            lists = [picked.column(name).to_pylist() for name in first.names]
            rows += _as_rows(first.kind, first.names, lists, range(len(taken)))
        return rows

    def _columns(self) -> list[list[str | None]]:
        if self._lists is None:
            self._lists = [self.batch.column(name).to_pylist() for name in self.names]
        return self._lists

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    def __getitem__(self, index: int) -> JsonRow:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.row(index % len(self)) if len(self) else {}

    def __iter__(self) -> Iterator[JsonRow]:
        return iter(self.rows_at(range(len(self))))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cells):
            return self.kind is other.kind and self.batch.equals(other.batch)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    def __hash__(self) -> int:  # mutable-looking, compared by value: not hashable
        raise TypeError("Cells are not hashable")

    def __repr__(self) -> str:
        return f"Cells({self.kind}, {len(self)} rows, columns {self.names})"


def _alike(
    picks: Sequence[tuple[Cells, Sequence[int]]],
) -> list[list[tuple[Cells, Sequence[int]]]]:
    """Runs of consecutive picks whose cells are of one kind, with the same columns."""
    runs: list[list[tuple[Cells, Sequence[int]]]] = []
    for cells, indexes in picks:
        if (
            runs
            and cells.kind is runs[-1][0][0].kind
            and cells.batch.schema.equals(runs[-1][0][0].batch.schema)
        ):
            runs[-1].append((cells, indexes))
        else:
            runs.append([(cells, indexes)])
    return runs


def _as_rows(
    kind: CellKind, names: list[str], lists: list[list[str | None]], positions: Iterable[int]
) -> list[JsonRow]:
    """The rows at these positions of the columns' values: only the values they give."""
    if kind is CellKind.TEXT:
        return [
            {n: c[i] for n, c in zip(names, lists, strict=True) if c[i] is not None}
            for i in positions
        ]
    loads = orjson.loads
    return [
        {n: loads(cell) for n, c in zip(names, lists, strict=True) if (cell := c[i]) is not None}
        for i in positions
    ]


def _strings(values: Sequence[str | None]) -> pa.StringArray:
    """A string column from its buffers, built here rather than by ``pa.array``.

    ``pa.array`` on Python values first imports pandas, to tell pandas objects
    apart: 36 MB more in every API process, for nothing. Building the buffers
    costs the same (the text joined and encoded at once, the offsets from each
    value's length, in bytes where the text is not ASCII).
    """
    count = len(values)
    valid = None
    if None in values:
        present = np.fromiter((v is not None for v in values), dtype=bool, count=count)
        valid = pa.py_buffer(np.packbits(present, bitorder="little"))
        values = [v if v is not None else "" for v in values]
    text = "".join(values)  # type: ignore[arg-type]
    data = text.encode()
    sizes: Iterable[int] = (
        map(len, values)  # type: ignore[arg-type]
        if len(data) == len(text)
        else (len(v.encode()) for v in values)  # type: ignore[union-attr]
    )
    offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(np.fromiter(sizes, dtype=np.int32, count=count), out=offsets[1:])
    nulls = -1 if valid is not None else 0
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(data), valid, nulls
    )


#: The one column of a batch whose rows give no values at all (``[{}, {}]``):
#: Arrow counts a batch's rows by its columns.
_LENGTH_ONLY = "\x00rows"


def _empty_rows(count: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(count, type=pa.string())], names=[_LENGTH_ONLY])
