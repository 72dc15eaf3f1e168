"""Kafka messages between the ingest API, the agents and the ClickHouse sink.

Both are plain slotted dataclasses rather than pydantic models: they are
produced and consumed only by bulkflow itself, millions of times per action,
and validated at the HTTP edge before they exist. A chunk travels as an Arrow
IPC stream (its rows as columns, :mod:`schemas.cells`, and the rest in the
schema's metadata); an outcome batch as one JSON line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import orjson
import pyarrow as pa

from schemas.cells import CellKind, Cells, JsonRow

#: Not compressed by Arrow: the producer compresses every Kafka batch with lz4
#: already, and Arrow's own lz4 cost 20 times the encoding and decoding
#: (0.19 + 0.14 ms against 0.015 + 0.016 ms for a chunk of 500 contacts).
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)
_HEADER = b"bulkflow.chunk"  # the schema metadata key of a chunk's other fields


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Operation(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


#: One character per row in ledgers and outcome messages: compact and replayable.
CODES: dict[str, tuple[Outcome, Operation | None]] = {
    "c": (Outcome.SUCCEEDED, Operation.CREATED),
    "u": (Outcome.SUCCEEDED, Operation.UPDATED),
    "n": (Outcome.SUCCEEDED, Operation.UNCHANGED),
    "d": (Outcome.SUCCEEDED, Operation.DELETED),
    "f": (Outcome.FAILED, None),
    "s": (Outcome.SKIPPED, None),
}


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row failed or was skipped: a stable code and a message for people."""

    reason: str
    message: str
    related_row: int = 0  # e.g. the row_no a duplicate repeats

    def to_json(self) -> list[Any]:
        return [self.reason, self.message, self.related_row]

    @classmethod
    def from_json(cls, value: list[Any]) -> RowProblem:
        return cls(str(value[0]), str(value[1]), int(value[2]))


class UndecodableChunk(ValueError):
    """Bytes that are not a chunk (of this version or an earlier one)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive rows of one bulk action; row ``i`` has ``row_no = first_row_no + i``."""

    action_id: str
    account_id: str
    entity: str
    action: str
    chunk_no: int
    first_row_no: int
    #: The rows, column by column; a list of JSON rows is made into cells.
    rows: Cells
    options: dict[str, Any] = field(default_factory=dict)
    #: Rows the reader could not turn into fields (index -> problem).
    broken: dict[int, RowProblem] = field(default_factory=dict)
    #: No rows: the upload broke off, and this marker comes through the chunk
    #: topic behind every chunk it published (ingest_api/uploads.py).
    ends_upload: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rows, Cells):
            object.__setattr__(self, "rows", Cells.from_rows(self.rows))  # type: ignore[unreachable]

    def to_bytes(self) -> bytes:
        header: dict[str, Any] = {
            "action_id": self.action_id,
            "account_id": self.account_id,
            "entity": self.entity,
            "action": self.action,
            "chunk_no": self.chunk_no,
            "first_row_no": self.first_row_no,
            "kind": self.rows.kind,
            "options": self.options,
            "broken": {str(i): p.to_json() for i, p in self.broken.items()},
        }
        if self.ends_upload:
            header["ends_upload"] = True
        batch = self.rows.batch
        batch = batch.replace_schema_metadata({_HEADER: orjson.dumps(header)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as writer:
            writer.write_batch(batch)
        encoded: bytes = sink.getvalue().to_pybytes()
        return encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> Chunk:
        """The chunk these bytes encode; :class:`UndecodableChunk` if they encode none."""
        try:
            return cls._decode(data)
        # StopIteration too: a stream with a schema but no batch. Escaping a
        # coroutine it would become a RuntimeError no caller expects.
        except (ValueError, TypeError, KeyError, AttributeError, StopIteration) as exc:
            raise UndecodableChunk(f"{type(exc).__name__}: {exc}") from exc

    @classmethod
    def _decode(cls, data: bytes) -> Chunk:
        if data[:1] == b"{":  # a JSON chunk, as bulkflow published them before Arrow
            return cls._from_json(orjson.loads(data))
        batch = pa.ipc.open_stream(data).read_next_batch()
        header = orjson.loads(batch.schema.metadata[_HEADER])
        rows = Cells(batch.replace_schema_metadata(None), CellKind(header.pop("kind")))
        header["broken"] = {int(i): RowProblem.from_json(p) for i, p in header["broken"].items()}
        return cls(rows=rows, **header)

    @classmethod
    def _from_json(cls, body: dict[str, Any]) -> Chunk:
        body["broken"] = {int(i): RowProblem.from_json(p) for i, p in body["broken"].items()}
        return cls(**body)

    @property
    def key(self) -> tuple[str, int]:
        return (self.action_id, self.chunk_no)


@dataclass(frozen=True, slots=True)
class OutcomeBatch:
    """The outcomes of every row of one chunk, column-oriented.

    Its bytes are one JSONEachRow line of ClickHouse's ``outcome_batches``
    (``clickhouse/002_outcome_batches.sql``), which expands them into one
    outcome per row: keep the two in step.
    """

    action_id: str
    account_id: str
    entity: str
    action: str
    chunk_no: int
    first_row_no: int
    codes: str  # one of CODES per row
    problems: dict[int, RowProblem]  # for rows coded "f" or "s"
    keys: list[str]  # each row's identifier as given ("" if none)
    rows: dict[int, JsonRow]  # the input of rows that did not succeed
    processed_at: float  # seconds since the epoch

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "account_id": self.account_id,
                "action_id": self.action_id,
                "entity": self.entity,
                "action": self.action,
                "chunk_no": self.chunk_no,
                "first_row_no": self.first_row_no,
                "codes": self.codes,
                "keys": self.keys,
                "problems": [
                    [
                        index,
                        problem.reason,
                        problem.message,
                        problem.related_row,
                        orjson.dumps(self.rows.get(index, {})).decode(),
                    ]
                    for index, problem in self.problems.items()
                ],
                "processed_at": self.processed_at,
            }
        )

    def halves(self) -> tuple[OutcomeBatch, OutcomeBatch]:
        """The first and the second half of the rows, each a batch of its own.

        The sink's view numbers rows from ``first_row_no``, so the halves
        expand to exactly the rows the whole would have.
        """
        cut = len(self.codes) // 2
        return self._part(0, cut), self._part(cut, len(self.codes))

    def _part(self, start: int, end: int) -> OutcomeBatch:
        def within(items: dict[int, Any]) -> dict[int, Any]:
            return {i - start: v for i, v in items.items() if start <= i < end}

        return replace(
            self,
            first_row_no=self.first_row_no + start,
            codes=self.codes[start:end],
            keys=self.keys[start:end],
            problems=within(self.problems),
            rows=within(self.rows),
        )

    def without_input(self) -> OutcomeBatch:
        """The outcomes with the input rows' values left out (when they cannot fit)."""
        note = {"_bulkflow": "the row's values were too large to keep with its outcome"}
        return replace(self, rows=dict.fromkeys(self.rows, note))

    @classmethod
    def from_bytes(cls, data: bytes) -> OutcomeBatch:
        body = orjson.loads(data)
        problems = body.pop("problems")
        body["problems"] = {p[0]: RowProblem.from_json(p[1:4]) for p in problems}
        body["rows"] = {p[0]: orjson.loads(p[4]) for p in problems}
        return cls(**body)
