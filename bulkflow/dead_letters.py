"""The dead-letter topic: chunks whose transient failures outlived every retry.

The agents fail such rows (``retries_exhausted``) and send the chunk here with
its error. ``bulkflow dead-letters list`` shows the ones not replayed yet;
``replay`` takes each chunk back out of the ledger and the action's counts and
publishes it again, then commits the replayer's offset so it is replayed once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bulkflow import constants, sql
from bulkflow.producer import ChunkProducer
from bulkflow.settings import Settings
from schemas.messages import CODES, Chunk, Outcome


@dataclass(frozen=True)
class DeadLetter:
    chunk: Chunk
    error: str
    failed_at: float  # seconds since the epoch

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "chunk": orjson.loads(self.chunk.to_bytes()),
                "error": self.error,
                "failed_at": self.failed_at,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DeadLetter:
        body = orjson.loads(data)
        return cls(Chunk.from_bytes(orjson.dumps(body["chunk"])), body["error"], body["failed_at"])


class DeadLetterQueue:
    """The agents' side: send chunks that failed for good."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, chunks: list[Chunk], error: BaseException) -> None:
        now = time.time()
        for chunk in chunks:
            letter = DeadLetter(chunk, f"{type(error).__name__}: {error}"[:1000], now)
            await self._producer.send_and_wait(
                self._topic, letter.to_bytes(), key=chunk.account_id.encode()
            )


@asynccontextmanager
async def _pending(settings: Settings) -> AsyncIterator[tuple[AIOKafkaConsumer, list[Any]]]:
    """The dead letters after the replayer's committed offset, and the consumer holding them."""
    topic = settings.topic(constants.DEAD_LETTERS_TOPIC)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.topic("bulkflow-dead-letter-replay"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        records = []
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            records += batch.get(partition, [])
        yield consumer, records
    finally:
        await consumer.stop()


async def list_pending(settings: Settings) -> list[DeadLetter]:
    async with _pending(settings) as (_, records):
        return [DeadLetter.from_bytes(r.value) for r in records]


async def replay(settings: Settings, pool: asyncpg.Pool) -> int:
    """Re-drive every pending dead letter; return how many."""
    async with _pending(settings) as (consumer, records), ChunkProducer.start(settings) as out:
        publisher = out.publisher()
        for record in records:
            chunk = DeadLetter.from_bytes(record.value).chunk
            await _rewind(pool, chunk)
            await publisher.send(chunk)
        await publisher.flush()
        if records:
            partition = TopicPartition(records[-1].topic, records[-1].partition)
            await consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "")})
        return len(records)


async def _rewind(pool: asyncpg.Pool, chunk: Chunk) -> None:
    async with pool.acquire() as conn, conn.transaction():
        codes = await conn.fetchval(
            sql.postgres("chunk_ledger_rewind"), chunk.action_id, chunk.chunk_no
        )
        if codes is None:
            return  # the failure was never recorded (the database was away too)
        counts = {outcome: 0 for outcome in Outcome}
        for code in codes:
            counts[CODES[code][0]] += 1
        await conn.execute(
            sql.postgres("bulk_actions_rewind"),
            chunk.action_id,
            len(codes),
            counts[Outcome.SUCCEEDED],
            counts[Outcome.FAILED],
            counts[Outcome.SKIPPED],
        )
