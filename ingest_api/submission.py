"""Turning a validated request into a recorded action and published chunks."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from urllib.parse import urlsplit

import anyio.to_thread
import asyncpg
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from starlette.requests import ClientDisconnect

from bulkflow import constants
from bulkflow.retry import through_outage
from ingest_api.accounts import has_webhook_secret
from ingest_api.actions import ActionStore, Created, Idempotency
from ingest_api.callbacks import check_callback_url
from ingest_api.csv_reader import CsvReader, CsvRejected, RowBlock
from ingest_api.errors import Conflict, InvalidCsv, PayloadTooLarge, Unavailable, ValidationFailed
from ingest_api.publisher import ChunkProducer, ChunkSink
from ingest_api.uploads import INTERRUPTED, UploadLease, UploadLost, end_upload
from schemas.action import ACTIONS
from schemas.bulk_action import ActionOptions, column_key
from schemas.cells import Cells, JsonRow
from schemas.entity import ENTITIES
from schemas.messages import Chunk, RowProblem

log = logging.getLogger(__name__)


def check_options(entity_name: str, action: str, options: ActionOptions) -> None:
    """Options that cannot work for this entity and action are rejected up front."""
    entity = ENTITIES[entity_name]
    kind = ACTIONS[action]
    if entity_name not in kind.entities:
        raise ValidationFailed(
            f"{action} does not apply to the {entity_name}",
            [{"loc": ["action"], "msg": f"{action} applies to: {', '.join(kind.entities)}"}],
        )
    known = {*kind.fields(entity), *entity.match_fields}
    problems = [
        {"loc": ["options", "mapping"], "msg": f"unknown field {target!r}"}
        for target in sorted(set(options.normalised_mapping().values()) - known)
    ]
    if options.match_on is not None and options.match_on not in entity.match_fields:
        problems.append(
            {"loc": ["options", "match_on"], "msg": f"one of {', '.join(entity.match_fields)}"}
        )
    if options.match_on == "id" and action == "create":
        problems.append({"loc": ["options", "match_on"], "msg": "create cannot match on id"})
    if problems:
        raise ValidationFailed("the options do not fit this entity and action", problems)


def colliding_columns(
    entity_name: str, action: str, options: ActionOptions, columns: Iterable[str]
) -> list[str]:
    """Columns that name a field another of the columns names too (after the mapping).

    Only the fields rows of this action give collide: other columns keep
    their own names in custom_fields.
    """
    entity = ENTITIES[entity_name]
    known = {*ACTIONS[action].fields(entity), *entity.match_fields}
    mapping = options.normalised_mapping()
    by_field: dict[str, list[str]] = defaultdict(list)
    for column in columns:
        key = column_key(column)
        by_field[mapping.get(key, key)].append(column)
    return [
        c for field, named in by_field.items() if field in known and len(named) > 1 for c in named
    ]


def _check_json_columns(
    entity: str, action: str, options: ActionOptions, columns: list[str], rows: list[JsonRow]
) -> None:
    """Refuse a row that gives one field twice (``Email`` and ``email``): which would win?"""
    colliding = set(colliding_columns(entity, action, options, columns))
    if not colliding:  # the usual case: no row needs a look
        return
    problems = []
    for index, row in enumerate(rows):
        same = colliding_columns(entity, action, options, [c for c in row if c in colliding])
        if same:
            problems.append(
                {"loc": ["rows", index], "msg": f"columns {', '.join(same)} name one field"}
            )
    if problems:
        raise ValidationFailed("rows give a field more than once", problems[:20])


def _chunk_cells(rows: list[JsonRow]) -> list[Cells]:
    """The cells of the request's chunks, ROWS_PER_CHUNK rows each; 413 if a row cannot travel.

    Made chunk by chunk: one conversion of all 10,000 rows took 10x the CPU,
    glibc's malloc shrinking and growing its heap around orjson's buffers.
    """
    step = constants.ROWS_PER_CHUNK
    parts = [Cells.from_rows(rows[start : start + step]) for start in range(0, len(rows), step)]
    too_large: list[int] = []
    for number, cells in enumerate(parts):
        too_large += [number * step + index for index in _rows_too_large(cells)]
    if too_large:
        raise PayloadTooLarge(
            f"{len(too_large)} rows exceed {constants.MAX_ROW_BYTES} bytes each",
            {"limit_bytes": constants.MAX_ROW_BYTES, "rows": too_large[:20]},
            code="row_too_large",
        )
    return parts


def _rows_too_large(cells: Cells) -> list[int]:
    """The rows whose ``orjson.dumps`` would exceed MAX_ROW_BYTES, measured from the cells.

    No row is encoded again just to be measured: a row's size is summed from
    its cells (each one the JSON text of a value), to the byte.
    """
    names = cells.names
    # No row takes more than all the cells and every name: usually the end of it.
    bound = 1 + cells.batch.nbytes + sum(len(orjson.dumps(name)) + 2 for name in names)
    if bound <= constants.MAX_ROW_BYTES:
        return []
    sizes = _json_sizes(cells)
    indices: list[int] = pc.indices_nonzero(pc.greater(sizes, constants.MAX_ROW_BYTES)).to_pylist()
    return indices


def _json_sizes(cells: Cells) -> pa.Array:
    """Each row's ``orjson.dumps`` size: ``{}``, ``"name":value`` per cell, commas between."""
    total = pa.repeat(pa.scalar(0, pa.int64()), len(cells))
    for name in cells.names:
        # The name's JSON text, a colon and a comma, for each cell the row gives.
        overhead = len(orjson.dumps(name)) + 2
        given = pc.add(pc.binary_length(cells.column(name)), overhead)
        total = pc.add(total, pc.fill_null(given, 0))
    # Braces, less the last cell's comma; a row without cells is "{}".
    return pc.if_else(pc.equal(total, 0), 2, pc.add(total, 1))


class Submitter:
    def __init__(
        self, store: ActionStore, producer: ChunkProducer, *, webhook_allow_private: bool = False
    ) -> None:
        self._store = store
        self._producer = producer
        self._webhook_allow_private = webhook_allow_private

    async def _check_callback(self, account_id: str, callback_url: str | None) -> None:
        """A callback needs an allowed address and the account's secret to sign it."""
        if callback_url is None:
            return
        check_callback_url(urlsplit(callback_url).hostname or "", self._webhook_allow_private)
        if not await has_webhook_secret(self._store.pool, account_id):
            raise Conflict(
                "the account has no webhook secret to sign callbacks with: create one "
                "(`bulkflow accounts webhook-secret ACCOUNT`, or the admin API) first",
                code="webhook_secret_missing",
            )

    async def submit_rows(
        self,
        account_id: str,
        entity: str,
        action: str,
        options: ActionOptions,
        rows: list[JsonRow],
        idempotency: Idempotency | None = None,
        scheduled_for: datetime | None = None,
        callback_url: str | None = None,
    ) -> Created:
        check_options(entity, action, options)
        # The rows become the chunks' columns once, measured on the way. A 15 MiB
        # request takes ~0.2 s of it: on a worker thread, so the event loop goes
        # on reading the bodies of other requests meanwhile.
        if len(rows) > constants.ROWS_PER_CHUNK:
            parts = await anyio.to_thread.run_sync(_chunk_cells, rows)
        else:
            parts = _chunk_cells(rows)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        _check_json_columns(entity, action, options, columns, rows)
        await self._check_callback(account_id, callback_url)
        created = await self._store.create(
            scheduled_for=scheduled_for,
            callback_url=callback_url,
            account_id=account_id,
            entity=entity,
            action=action,
            source="json",
            options=options,
            total_rows=len(rows),
            columns=columns,
            idempotency=idempotency,
        )
        if created.replayed:
            return created
        record = created.record
        blocks = (
            RowBlock(number * constants.ROWS_PER_CHUNK + 1, cells)
            for number, cells in enumerate(parts)
        )
        await self._publish(record, options, _aiter(blocks))
        return created

    async def submit_csv(
        self,
        account_id: str,
        entity: str,
        action: str,
        options: ActionOptions,
        reader: CsvReader,
        idempotency: Idempotency | None = None,
        scheduled_for: datetime | None = None,
        callback_url: str | None = None,
    ) -> Created:
        """Create the action once the header and a first row are read, then stream the rest."""
        check_options(entity, action, options)
        _check_header(entity, action, options, reader.header)
        await self._check_callback(account_id, callback_url)
        blocks = reader.blocks()
        try:
            first = await anext(blocks, None)
        except CsvRejected as exc:
            raise InvalidCsv(exc.code, exc.message) from exc
        if first is None:
            raise InvalidCsv("empty_file", "the file has a header but no data rows")
        created = await self._store.create(
            scheduled_for=scheduled_for,
            callback_url=callback_url,
            account_id=account_id,
            entity=entity,
            action=action,
            source="csv",
            options=options,
            total_rows=None,
            columns=reader.header,
            idempotency=idempotency,
        )
        if not created.replayed:
            await self._publish(created.record, options, _prepend(first, blocks))
        return created

    async def _publish(
        self,
        record: asyncpg.Record,
        options: ActionOptions,
        blocks: AsyncIterator[RowBlock],
    ) -> None:
        """Publish the rows under the upload's lease, then seal the total (a JSON
        request's too: it also ends the lease).

        An upload that breaks off, for whatever reason, is ended (see
        ``ingest_api/uploads.py``): the rows published before are applied and
        the action ends ``failed`` once they all have their outcomes.
        """
        # A scheduled action's chunks wait in Postgres; the scheduler sends them.
        publisher: ChunkSink = (
            self._store.scheduled_writer()
            if record["status"] == "scheduled"
            else self._producer.publisher()
        )
        action_id = record["id"]
        make = partial(_chunk, record, options)
        async with UploadLease.held(self._store.pool, action_id) as lease:
            try:
                chunk_no = 0
                async for block in blocks:
                    for chunk, encoded in cut(make, chunk_no, block):
                        lease.check()
                        await publisher.send(chunk, encoded)
                        chunk_no += 1
                await publisher.flush()
            except Exception as exc:
                await self._abandon(action_id, publisher, exc)
                raise _api_error(exc, action_id) from exc
        # Every row is on Kafka: recording the total waits out a Postgres outage.
        total = publisher.published_rows
        sealed = await through_outage(
            lambda: self._store.seal(action_id, total), patience=constants.UPLOAD_PATIENCE
        )
        if not sealed:
            raise _api_error(UploadLost(str(action_id)), action_id)

    async def _abandon(self, action_id: uuid.UUID, publisher: ChunkSink, exc: Exception) -> None:
        code, message = _reason(exc)
        log.warning("the upload of bulk action %s broke off: %s", action_id, code)
        with contextlib.suppress(Exception):
            await publisher.flush()  # what reaches Kafka still counts; the marker goes behind it
        try:
            await end_upload(self._store.pool, action_id, {"code": code, "message": message})
        except Exception:
            # Postgres is away too: the lease lapses, and a reaper ends the upload.
            log.exception("could not end the upload of %s; its lease will lapse", action_id)


def _reason(exc: Exception) -> tuple[str, str]:
    """The error an upload that broke off with ``exc`` keeps on its action."""
    if isinstance(exc, CsvRejected):
        return exc.code, exc.message
    if isinstance(exc, UploadLost):
        return INTERRUPTED["code"], INTERRUPTED["message"]
    if isinstance(exc, MessageSizeTooLargeError):
        return "message_too_large", f"a chunk exceeded {constants.MAX_MESSAGE_BYTES} bytes"
    if isinstance(exc, KafkaError):
        return "publish_failed", f"the message broker refused a chunk: {exc!r}"[:500]
    if isinstance(exc, ClientDisconnect):
        return "client_disconnected", "the client closed the connection before the end"
    return "internal_error", "the upload failed on our side; it has been logged"


def _api_error(exc: Exception, action_id: uuid.UUID) -> Exception:
    """What the request that broke off answers: every answer names the action it created."""
    details = {"action_id": str(action_id)}
    if isinstance(exc, CsvRejected):
        return InvalidCsv(exc.code, exc.message, details)
    if isinstance(exc, MessageSizeTooLargeError):
        return PayloadTooLarge(
            f"a message exceeded the broker's limit of {constants.MAX_MESSAGE_BYTES} bytes; "
            "the rows sent before are applied",
            {**details, "limit_bytes": constants.MAX_MESSAGE_BYTES},
        )
    if isinstance(exc, KafkaError | UploadLost):
        return Unavailable(
            "the upload stopped (the rows sent before are applied, and retrying with the same "
            "Idempotency-Key uploads again)",
            details,
        )
    return exc


def cut(
    make: Callable[[int, RowBlock], Chunk], chunk_no: int, block: RowBlock
) -> Iterator[tuple[Chunk, bytes]]:
    """The block as chunks numbered from ``chunk_no``, each encoded once.

    Rows are cut by count in the reader; here a block of wide rows is halved
    until each part is below CHUNK_TARGET_BYTES or a single row. A single row
    larger than MAX_ROW_BYTES fails alone (``row_too_large``); its values are
    left out, since they cannot travel.
    """
    pending = [block]
    while pending:
        piece = pending.pop()
        # The columns' size bounds what an agent holds of the chunk: a piece
        # over the target is halved without being encoded. The message also
        # carries the chunk's fields and problems: its size is checked too.
        if piece.rows.batch.nbytes > constants.CHUNK_TARGET_BYTES and len(piece.rows) > 1:
            pending += _halves(piece)[::-1]
            continue
        chunk = make(chunk_no, piece)
        encoded = chunk.to_bytes()
        if len(encoded) > constants.CHUNK_TARGET_BYTES and len(piece.rows) > 1:
            pending += _halves(piece)[::-1]
            continue
        if len(encoded) > constants.MAX_ROW_BYTES:
            chunk = make(chunk_no, _too_large(piece, len(encoded)))
            encoded = chunk.to_bytes()
        yield chunk, encoded
        chunk_no += 1


def _halves(block: RowBlock) -> tuple[RowBlock, RowBlock]:
    cut_at = len(block.rows) // 2
    broken = block.broken
    return (
        RowBlock(
            block.first_row_no,
            block.rows.slice(0, cut_at),
            {i: p for i, p in broken.items() if i < cut_at},
        ),
        RowBlock(
            block.first_row_no + cut_at,
            block.rows.slice(cut_at, len(block.rows)),
            {i - cut_at: p for i, p in broken.items() if i >= cut_at},
        ),
    )


def _too_large(block: RowBlock, size: int) -> RowBlock:
    problem = RowProblem(
        "row_too_large",
        f"the row takes {size} bytes; a row may take at most {constants.MAX_ROW_BYTES}",
    )
    return RowBlock(block.first_row_no, Cells.from_rows([{}]), {0: problem})


def _check_header(entity: str, action: str, options: ActionOptions, header: list[str]) -> None:
    match_on = options.match_on or ENTITIES[entity].identifier
    mapping = options.normalised_mapping()
    fields = {mapping.get(key, key) for key in map(column_key, header)}
    if colliding := colliding_columns(entity, action, options, header):
        raise InvalidCsv(
            "invalid_header", f"columns {', '.join(colliding)} name one field (with the mapping)"
        )
    if match_on not in fields:
        raise InvalidCsv(
            "missing_identifier_column",
            f"the header has no {match_on!r} column (nor a mapping to it)",
        )


def _chunk(record: asyncpg.Record, options: ActionOptions, chunk_no: int, block: RowBlock) -> Chunk:
    return Chunk(
        action_id=str(record["id"]),
        account_id=record["account_id"],
        entity=record["entity"],
        action=record["action"],
        chunk_no=chunk_no,
        first_row_no=block.first_row_no,
        rows=block.rows,
        options=options.model_dump(mode="json"),
        broken=block.broken,
    )


async def _aiter(blocks: object) -> AsyncIterator[RowBlock]:
    for block in blocks:  # type: ignore[attr-defined]
        yield block


async def _prepend(first: RowBlock, rest: AsyncIterator[RowBlock]) -> AsyncIterator[RowBlock]:
    yield first
    async for block in rest:
        yield block
