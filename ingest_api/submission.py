"""Turning a validated request into a recorded action and published chunks."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import datetime

import asyncpg
from aiokafka.errors import KafkaError

from bulkflow import constants
from bulkflow.producer import ChunkProducer, ChunkSink
from ingest_api.actions import ActionStore, Created, Idempotency
from ingest_api.csv_reader import CsvReader, CsvRejected, RowBlock
from ingest_api.errors import InvalidCsv, Unavailable, ValidationFailed
from schemas.bulk_action import ActionOptions, column_key
from schemas.entity import ENTITIES
from schemas.messages import Chunk, JsonRow

log = logging.getLogger(__name__)


def check_options(entity_name: str, action: str, options: ActionOptions) -> None:
    """Options that cannot work for this entity and action are rejected up front."""
    entity = ENTITIES[entity_name]
    known = {*entity.fields, *entity.match_fields}
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
    entity_name: str, options: ActionOptions, columns: Iterable[str]
) -> list[str]:
    """Columns that name a field another of the columns names too (after the mapping).

    Only the entity's own fields collide: other columns keep their own names
    in custom_fields.
    """
    entity = ENTITIES[entity_name]
    known = {*entity.fields, *entity.match_fields}
    mapping = options.normalised_mapping()
    by_field: dict[str, list[str]] = defaultdict(list)
    for column in columns:
        key = column_key(column)
        by_field[mapping.get(key, key)].append(column)
    return [
        c for field, named in by_field.items() if field in known and len(named) > 1 for c in named
    ]


def _check_json_columns(
    entity: str, options: ActionOptions, columns: list[str], rows: list[JsonRow]
) -> None:
    """Refuse a row that gives one field twice (``Email`` and ``email``): which would win?"""
    colliding = set(colliding_columns(entity, options, columns))
    if not colliding:  # the usual case: no row needs a look
        return
    problems = []
    for index, row in enumerate(rows):
        if same := colliding_columns(entity, options, [c for c in row if c in colliding]):
            problems.append(
                {"loc": ["rows", index], "msg": f"columns {', '.join(same)} name one field"}
            )
    if problems:
        raise ValidationFailed("rows give a field more than once", problems[:20])


class Submitter:
    def __init__(self, store: ActionStore, producer: ChunkProducer) -> None:
        self._store = store
        self._producer = producer

    async def submit_rows(
        self,
        account_id: str,
        entity: str,
        action: str,
        options: ActionOptions,
        rows: list[JsonRow],
        idempotency: Idempotency | None = None,
        scheduled_for: datetime | None = None,
    ) -> Created:
        check_options(entity, action, options)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        _check_json_columns(entity, options, columns, rows)
        created = await self._store.create(
            scheduled_for=scheduled_for,
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
            RowBlock(first_row_no=start + 1, rows=rows[start : start + constants.ROWS_PER_CHUNK])
            for start in range(0, len(rows), constants.ROWS_PER_CHUNK)
        )
        await self._publish(record, options, _aiter(blocks), seal=False)
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
    ) -> Created:
        """Create the action once the header and a first row are read, then stream the rest."""
        check_options(entity, action, options)
        _check_header(entity, options, reader.header)
        blocks = reader.blocks()
        try:
            first = await anext(blocks, None)
        except CsvRejected as exc:
            raise InvalidCsv(exc.code, exc.message) from exc
        if first is None:
            raise InvalidCsv("empty_file", "the file has a header but no data rows")
        created = await self._store.create(
            scheduled_for=scheduled_for,
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
            await self._publish(created.record, options, _prepend(first, blocks), seal=True)
        return created

    async def _publish(
        self,
        record: asyncpg.Record,
        options: ActionOptions,
        blocks: AsyncIterator[RowBlock],
        *,
        seal: bool,
    ) -> None:
        # A scheduled action's chunks wait in Postgres; the scheduler sends them.
        publisher: ChunkSink = (
            self._store.scheduled_writer()
            if record["status"] == "scheduled"
            else self._producer.publisher()
        )
        try:
            chunk_no = 0
            async for block in blocks:
                await publisher.send(_chunk(record, options, chunk_no, block))
                chunk_no += 1
            await publisher.flush()
        except CsvRejected as exc:
            await self._abandon(record, publisher, exc.code, exc.message)
            raise InvalidCsv(exc.code, exc.message) from exc
        except KafkaError as exc:
            await self._abandon(record, publisher, "publish_failed", str(exc))
            raise Unavailable(
                "the message broker is unavailable; the upload stopped (the rows sent before "
                "are applied, and retrying with the same Idempotency-Key uploads again)",
                {"action_id": str(record["id"]), "published_rows": publisher.published_rows},
            ) from exc
        if seal:
            await self._store.seal(record["id"], publisher.published_rows)

    async def _abandon(
        self, record: asyncpg.Record, publisher: ChunkSink, code: str, message: str
    ) -> None:
        log.warning("bulk action %s abandoned: %s", record["id"], code)
        try:
            await publisher.flush()
        except KafkaError:
            pass  # what did not reach Kafka is not counted in the total either way
        await self._store.fail(
            record["id"], {"code": code, "message": message}, publisher.published_rows
        )


def _check_header(entity: str, options: ActionOptions, header: list[str]) -> None:
    match_on = options.match_on or ENTITIES[entity].identifier
    mapping = options.normalised_mapping()
    fields = {mapping.get(key, key) for key in map(column_key, header)}
    if colliding := colliding_columns(entity, options, header):
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
