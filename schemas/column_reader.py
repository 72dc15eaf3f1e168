"""Reads a chunk's rows a column at a time; Python looks at a row only if it may fail.

The columnar counterpart of :class:`schemas.entity.ModelRowReader`, with the
same routing, empty-value rules and custom fields. Each column is checked by
its field's rule (:mod:`schemas.column_rules`); a row goes to the row reader
(pydantic, the exact reasons and messages) when any of its values is one a
rule cannot vouch for: an invalid value, a clear token, a JSON value other than
a plain string (or an integer, for an integer field), a non-ASCII match key
compared without case. So the result is the row reader's, row for row.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate, chain, pairwise
from typing import Any, NamedTuple, Protocol, overload

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.cells import CellKind, Cells
from schemas.column_rules import PYTHON_WHITESPACE, IntegerRule, Rule, rule_for
from schemas.entity import MATCH_ID, ModelEntity, ModelRowReader, Prepared, RowReader
from schemas.messages import Chunk, RowProblem
from schemas.options import ActionOptions

Mask = npt.NDArray[np.bool_]


class ReadRows(NamedTuple):
    """A chunk's rows as read: the valid ones as columns, the others' problems."""

    valid: list[int]  # the valid rows' indexes, in order
    key: list[str]  # ... each one's normalised match value
    match_id: list[int | None]
    mask: list[int]
    values: Sequence[list[Any]]  # ... their written fields: a column per Entity.fields
    display_keys: list[str]  # every row's match value as given
    problems: dict[int, RowProblem]
    #: The valid rows' written fields as Arrow arrays, named by Entity.fields
    #: (custom_fields as each row's JSON text, null if it gives none), when every
    #: valid row was read by columns; None when a row was read by the model.
    columns: pa.RecordBatch | None = None


class FieldValues(Sequence[list[Any]]):
    """The written fields of a column read as Python values, a column per field,
    each made from its Arrow array when first asked for: the rows the plain
    INSERT copies from the arrays never need them (``stream_agents/plain_insert.py``),
    and :meth:`at` makes only some rows' values."""

    __slots__ = ("_columns", "_made")

    def __init__(self, columns: pa.RecordBatch) -> None:
        self._columns = columns
        self._made: dict[int, list[Any]] = {}

    def __len__(self) -> int:
        return int(self._columns.num_columns)

    @overload
    def __getitem__(self, field: int) -> list[Any]: ...
    @overload
    def __getitem__(self, field: slice) -> Sequence[list[Any]]: ...
    def __getitem__(self, field: int | slice) -> list[Any] | Sequence[list[Any]]:
        if isinstance(field, slice):
            return [self[i] for i in range(len(self))[field]]
        made = self._made.get(field)
        if made is None:
            made = self._made[field] = _python(self._columns, field)
        return made

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __hash__(self) -> int:
        raise TypeError("unhashable type: 'FieldValues'")

    def at(self, positions: Sequence[int]) -> list[list[Any]]:
        """The values of the rows at these positions, a column per field."""
        taken = self._columns.take(pa.array(positions, pa.int64()))
        return [_python(taken, field) for field in range(len(self))]

    @staticmethod
    def at_each(picks: Sequence[tuple[FieldValues, Sequence[int]]]) -> list[list[Any]] | None:
        """The values of the rows at these positions of each, one after the other, a
        column per field; None unless their columns are alike.

        One take over them all: a take and a field's conversion cost about as much
        on a few rows as on hundreds, and a round often has a few rows of many
        chunks (the repeats of earlier rows, which the apply statement decides).
        """
        batches = [values._columns for values, _ in picks]
        if not batches or any(not b.schema.equals(batches[0].schema) for b in batches[1:]):
            return None
        starts = accumulate((batch.num_rows for batch in batches), initial=0)
        indexes = np.fromiter(
            chain.from_iterable(
                map(start.__add__, positions)
                for start, (_, positions) in zip(starts, picks, strict=False)
            ),
            np.int64,
        )
        taken = pa.Table.from_batches(batches).take(indexes)
        return [_python(taken, field) for field in range(taken.num_columns)]

    def slice(self, start: int, stop: int) -> FieldValues:
        return FieldValues(self._columns.slice(start, stop - start))


def _python(columns: pa.RecordBatch | pa.Table, field: int) -> list[Any]:
    """A column's Python values; custom fields' JSON texts as the objects they write."""
    values: list[Any] = columns.column(field).to_pylist()
    if columns.schema.names[field] == "custom_fields":
        return [None if text is None else orjson.loads(text) for text in values]
    return values


class ChunkReader(Protocol):
    def read(self, cells: Cells, broken: dict[int, RowProblem]) -> ReadRows:
        """Read every row of a chunk; ``broken`` rows fail with their problem."""
        ...


class _Column(NamedTuple):
    field: str
    is_custom: bool
    values: pa.Array  # the checked values (stripped, typed); custom: as given
    given: Mask  # the row gives a value (not ignored as empty)


class ColumnReader:
    def __init__(self, entity: ModelEntity, options: ActionOptions, action: str) -> None:
        self._entity = entity
        self._rows = ModelRowReader(entity, options, action)
        self._match_on = options.match_on or entity.identifier
        self._ignore_empty = options.ignore_empty
        self._clear_token = options.clear_token
        self._delete = action == "delete"
        self._rules: dict[str, Rule | None] = {
            name: rule_for(field) for name, field in entity.model.model_fields.items()
        }
        self._bits = {f: 1 << i for i, f in enumerate(entity.fields)}

    def read(self, cells: Cells, broken: dict[int, RowProblem]) -> ReadRows:
        count = len(cells)
        slow = np.zeros(count, dtype=bool)
        if broken:
            slow[list(broken)] = True
        columns = []
        for name in cells.names:
            column = self._column(cells, name, slow)
            if column is not None:
                columns.append(column)
        fields = [c for c in columns if not c.is_custom]
        if len({c.field for c in fields}) < len(fields):  # two columns for one field
            slow[:] = True
        match = next((c for c in fields if c.field == self._match_on), None)
        if match is None:
            slow[:] = True  # no row gives the match value: each fails for it
        else:
            slow |= ~match.given
            if self._match_on == self._entity.identifier and self._entity.case_insensitive:
                slow |= ~_true(pc.string_is_ascii(pc.fill_null(match.values, "")))
        fast = np.flatnonzero(~slow)
        read = self._fast(cells, columns, match, fast) if len(fast) else _nothing()
        if slow.any():
            read = one_by_one(self._rows, read, cells, np.flatnonzero(slow).tolist(), broken)
        return read

    def _column(self, cells: Cells, name: str, slow: Mask) -> _Column | None:
        route = self._rows.route(name)
        if route is None:
            return None
        field, is_custom = route
        if self._delete and (is_custom or field != self._match_on):
            return None  # a delete reads only the match value
        rule = None if is_custom else self._rules.get(field)
        cells_of = cells.column(name)
        if cells.kind is CellKind.JSON:
            cells_of, unreadable = _json_text(cells_of, integer=isinstance(rule, IntegerRule))
            slow |= unreadable
        given = _true(pc.is_valid(cells_of))
        if self._ignore_empty:
            given &= ~_true(pc.equal(cells_of, ""))
        if self._clear_token is not None:
            slow |= given & _true(pc.equal(cells_of, self._clear_token))
        if is_custom:
            return _Column(field, True, cells_of, given)
        if rule is None:
            slow |= given  # no rule for this field: the model judges it
            return _Column(field, False, cells_of, given)
        checked = rule.check(cells_of)
        slow |= given & ~_true(checked.valid)
        return _Column(field, False, checked.values, given)

    def _fast(
        self, cells: Cells, columns: list[_Column], match: _Column | None, rows: npt.NDArray[Any]
    ) -> ReadRows:
        """The rows every rule vouched for, as the row reader would have read them."""
        assert match is not None
        entity, count = self._entity, len(cells)
        by_field = {c.field: c for c in columns if not c.is_custom}
        customs = [c for c in columns if c.is_custom]
        if self._match_on == entity.identifier and entity.case_insensitive:
            key = pc.utf8_lower(match.values)
        else:
            key = pc.cast(match.values, pa.string())
        # Every column the statement needs, the fast rows taken out in one call.
        arrays = {_KEY: key, **{f: _given_values(c) for f, c in by_field.items()}}
        arrays |= {f"{_CUSTOM}{i}": _given_values(c) for i, c in enumerate(customs)}
        if self._match_on == MATCH_ID:
            arrays[_ID] = pc.cast(match.values, pa.int64())
        picked = rows.tolist()
        table = pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))
        if len(picked) != count:
            table = table.take(pa.array(picked, type=pa.int64()))
        fields = self._columns(table, [c.field for c in customs])
        mask = np.zeros(len(picked), dtype=np.int64)
        for column in by_field.values():
            mask += column.given[rows] * self._bits.get(column.field, 0)
        if customs:
            mask += _true(pc.is_valid(fields.column("custom_fields"))) * self._bits["custom_fields"]
        shown = pc.utf8_trim(cells_text(cells, match, self._rows), characters=PYTHON_WHITESPACE)
        return ReadRows(
            valid=picked,
            key=table.column(_KEY).to_pylist(),
            match_id=table.column(_ID).to_pylist() if _ID in arrays else [None] * len(picked),
            mask=mask.tolist(),
            values=FieldValues(fields),
            display_keys=shown.to_pylist(),  # a slow row's is set when it is read
            problems={},
            columns=fields,
        )

    def _columns(self, table: pa.RecordBatch, customs: list[str]) -> pa.RecordBatch:
        """The fast rows' written fields as arrays (a field no column gives: nulls),
        each of its rule's type whatever the chunk gives, so that reads concatenate."""
        count = table.num_rows
        arrays = []
        for name in self._entity.fields:
            kind = pa.int64() if isinstance(self._rules.get(name), IntegerRule) else pa.string()
            if name == "custom_fields":
                given = [table.column(f"{_CUSTOM}{i}") for i in range(len(customs))]
                arrays.append(custom_json(customs, given, count))
            elif name in table.schema.names:
                arrays.append(table.column(name).cast(kind))
            else:
                arrays.append(pa.nulls(count, kind))
        return pa.RecordBatch.from_arrays(arrays, names=list(self._entity.fields))


#: Names of the columns _fast takes besides the fields (no field name starts with NUL).
_KEY, _ID, _CUSTOM = "\x00key", "\x00id", "\x00custom"


def custom_json(names: list[str], columns: list[pa.Array], count: int) -> pa.Array:
    """Each row's custom fields as a JSON object's text, null where it gives none:
    the unmapped columns it gives (name: value), written by Arrow's kernels.

    A value that needs an escape in JSON (RFC 8259: a quote, a backslash, a
    control character) is written by orjson; the others are quoted as they are.
    """
    keys = [orjson.dumps(name).decode() for name in names]
    if len(names) == 1 and not _may_need_escapes(columns[0]):
        return pc.binary_join_element_wise("{" + keys[0] + ':"', columns[0], '"}', "")
    members = []
    for key, values in zip(keys, columns, strict=True):
        quoted = pc.binary_join_element_wise('"', values, '"', "")
        if _may_need_escapes(values):
            escaped = _true(pc.match_substring_regex(values, _NEEDS_ESCAPE))
            texts = [orjson.dumps(v).decode() for v in values.filter(pa.array(escaped)).to_pylist()]
            quoted = pc.replace_with_mask(quoted, pa.array(escaped), pa.array(texts, pa.string()))
        members.append(pc.fill_null(pc.binary_join_element_wise(key + ":", quoted, ",", ""), ""))
    if not members:
        return pa.nulls(count, pa.string())
    # Each given member ends with a comma; the last one's becomes the brace.
    # (null_handling="skip" would leave out the rows giving none: pyarrow 26.)
    joined = pc.binary_join_element_wise(*members, "")
    text = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 0, -1), "}", "")
    return pc.if_else(pc.not_equal(joined, ""), text, None)


#: What a JSON string cannot hold as it is (RFC 8259, section 7)...
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
#: ... as bytes of UTF-8 (no byte of a multi-byte character is below 0x80).
_ESCAPED_BYTES = np.zeros(256, np.bool_)
_ESCAPED_BYTES[[*range(0x20), ord('"'), ord("\\")]] = True


def _may_need_escapes(values: pa.Array) -> bool:
    """Whether any byte of the column's characters needs an escape in JSON: one
    lookup per byte of its buffer, instead of a kernel per row."""
    data = values.buffers()[2]
    return data is not None and bool(_ESCAPED_BYTES[np.frombuffer(data, np.uint8)].any())


def _given_values(column: _Column) -> pa.Array:
    """The column's values, null where the row gives none."""
    if column.given.all():
        return column.values
    return pc.if_else(pa.array(column.given), column.values, None)


def warm_up(reader: ChunkReader) -> None:
    """Read a row once: pyarrow's first compute calls set up its kernels, which
    belongs to a process's start, not its first batch."""
    reader.read(Cells.from_records(["email"], [["warm@up.example"]]), {})


def read_chunks(reader: ChunkReader, chunks: Sequence[Chunk]) -> list[ReadRows]:
    """Read chunks whose cells have the same columns at once; each chunk's rows."""
    if len(chunks) == 1:
        return [reader.read(chunks[0].rows, chunks[0].broken)]
    starts = list(accumulate((len(c.rows) for c in chunks), initial=0))
    broken = {
        start + index: problem
        for start, chunk in zip(starts, chunks, strict=False)
        for index, problem in chunk.broken.items()
    }
    read = reader.read(Cells.concat([c.rows for c in chunks]), broken)
    return [_within(read, start, end) for start, end in pairwise(starts)]


def _within(read: ReadRows, start: int, end: int) -> ReadRows:
    """The rows ``start`` to ``end`` of a read, numbered from 0."""
    first, last = bisect_left(read.valid, start), bisect_left(read.valid, end)
    return ReadRows(
        valid=[index - start for index in read.valid[first:last]],
        key=read.key[first:last],
        match_id=read.match_id[first:last],
        mask=read.mask[first:last],
        values=(
            read.values.slice(first, last)
            if isinstance(read.values, FieldValues)
            else [column[first:last] for column in read.values]
        ),
        display_keys=read.display_keys[start:end],
        problems={i - start: p for i, p in read.problems.items() if start <= i < end},
        columns=None if read.columns is None else read.columns.slice(first, last - first),
    )


class RowByRow:
    """The chunk reader of a row reader without a columnar counterpart (the tag actions)."""

    def __init__(self, rows: RowReader) -> None:
        self._rows = rows

    def read(self, cells: Cells, broken: dict[int, RowProblem]) -> ReadRows:
        return one_by_one(self._rows, _nothing(), cells, list(range(len(cells))), broken)


def one_by_one(
    reader: RowReader,
    read: ReadRows,
    cells: Cells,
    rows: list[int],
    broken: dict[int, RowProblem],
) -> ReadRows:
    """``read`` with these rows added in their places, each read by the row reader."""
    problems = dict(read.problems)
    display = read.display_keys or [""] * len(cells)
    valid: dict[int, Prepared] = {}
    for index, row in zip(rows, cells.rows_at(rows), strict=True):
        prepared = broken.get(index) or reader.prepare(row)
        if isinstance(prepared, RowProblem):
            problems[index] = prepared
            display[index] = reader.display_key(row)
        else:
            valid[index] = prepared
            display[index] = prepared.display_key
    if not valid:
        return read._replace(display_keys=display, problems=problems)
    merged: list[tuple[int, str, int | None, int, tuple[Any, ...]]] = [
        *zip(
            read.valid,
            read.key,
            read.match_id,
            read.mask,
            zip(*read.values, strict=True),
            strict=True,
        ),
        *((i, p.key, p.match_id, p.mask, p.values) for i, p in valid.items()),
    ]
    merged.sort(key=lambda row: row[0])
    valid_rows, keys, match_ids, masks, rows_values = (list(c) for c in zip(*merged, strict=True))
    values = [list(column) for column in zip(*rows_values, strict=True)]
    return ReadRows(valid_rows, keys, match_ids, masks, values, display, problems, None)


def cells_text(cells: Cells, match: _Column, rows: ModelRowReader) -> pa.Array:
    """The match column's values as given (for display keys), before any rule."""
    for name in cells.names:
        if rows.route(name) == (match.field, False):
            column = cells.column(name)
            return _json_text(column, integer=True)[0] if cells.kind is CellKind.JSON else column
    raise LookupError(match.field)


def _json_text(cells: pa.Array, *, integer: bool) -> tuple[pa.Array, Mask]:
    """JSON texts as the values they hold where those are plain strings (or integers,
    for an integer field); and the rows where they are something else."""
    plain = pc.and_not(pc.starts_with(cells, '"'), pc.match_substring(cells, "\\"))
    text = pc.if_else(plain, pc.utf8_slice_codeunits(cells, 1, -1), None)
    readable = plain
    if integer:
        number = pc.match_substring_regex(cells, r"^-?[0-9]+$")
        text = pc.if_else(number, cells, text)
        readable = pc.or_(plain, number)
    unreadable = _true(pc.is_valid(cells)) & ~_true(readable)
    return text, unreadable


def _true(values: pa.Array) -> Mask:
    """Where a boolean column is true (null counts as false).

    From the bitmap itself: ``to_numpy`` on booleans goes through pandas'
    machinery (and imports it on first use, a third of a second).
    """
    if values.null_count:
        values = pc.fill_null(values, False)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
    start = values.offset
    mask: Mask = np.unpackbits(bits, bitorder="little")[start : start + len(values)].view(bool)
    return mask


def _nothing() -> ReadRows:
    return ReadRows([], [], [], [], [], [], {})
