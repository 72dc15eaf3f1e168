"""The dead-letter topic: what the agents and the sink could not process, kept for replay.

- **Chunks** whose batch failed for good (transient failures that outlived
  every retry while the database answered, or a bug): their rows fail, and
  the action's later chunks are held behind them (``held_for_replay``), so
  that a replay applies the rows in file order. ``bulkflow dead-letters
  replay`` takes each chunk back out of the ledger and the action's counts and
  publishes it again, then commits the replayer's offset so it is replayed once.
- **Undecodable messages** (a chunk or an outcome message that is not what
  bulkflow writes): kept as received, with the topic they came from, so that
  nothing vanishes unseen; a replay prints them instead of publishing them.

Sending a dead letter is retried until the broker has it: the batch it came
from is acknowledged only after.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bulkflow import constants, metrics, sql
from bulkflow.kafka import Producer
from bulkflow.retry import persistently
from bulkflow.settings import Settings
from schemas.messages import CODES, Chunk, Outcome

_MAX_ERROR = 1000  # characters of the error kept with a letter


@dataclass(frozen=True)
class DeadLetter:
    kind: Literal["chunk", "undecodable"]
    error: str
    failed_at: float  # seconds since the epoch
    chunk: Chunk | None = None  # kind "chunk"
    topic: str = ""  # kind "undecodable": where the message came from
    raw: bytes = b""  # kind "undecodable": the message as received

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "kind": self.kind,
                # The chunk as it travels (Arrow IPC), so a replay sends it back as it was.
                "chunk_arrow": base64.b64encode(self.chunk.to_bytes()).decode()
                if self.chunk
                else None,
                "topic": self.topic,
                "raw": base64.b64encode(self.raw).decode(),
                "error": self.error,
                "failed_at": self.failed_at,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DeadLetter:
        body = orjson.loads(data)
        if encoded := body.get("chunk_arrow"):
            chunk = Chunk.from_bytes(base64.b64decode(encoded))
        elif body.get("chunk"):  # a letter written while chunks travelled as JSON
            chunk = Chunk.from_bytes(orjson.dumps(body["chunk"]))
        else:
            chunk = None
        return cls(
            kind=body.get("kind", "chunk"),  # letters written before kinds existed were chunks
            error=body["error"],
            failed_at=body["failed_at"],
            chunk=chunk,
            topic=body.get("topic", ""),
            raw=base64.b64decode(body.get("raw", "")),
        )

    def describe(self) -> str:
        if self.chunk is None:
            return f"undecodable message of {self.topic} ({len(self.raw)} bytes): {self.error}"
        chunk = self.chunk
        last = chunk.first_row_no + len(chunk.rows) - 1
        return (
            f"action {chunk.action_id} chunk {chunk.chunk_no} rows {chunk.first_row_no}-{last} "
            f"account {chunk.account_id}: {self.error}"
        )


class DeadLetterQueue:
    """The agents' and the sink's side: keep what could not be processed."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send_chunks(self, chunks: Sequence[Chunk], error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
        now = time.time()
        letters = [DeadLetter("chunk", reason, now, chunk=chunk) for chunk in chunks]
        await persistently(f"dead-lettering {len(letters)} chunks", lambda: self._deliver(letters))
        metrics.DEAD_LETTERS.labels("chunk").inc(len(letters))

    async def send_undecodable(self, topic: str, message: bytes, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
        letter = DeadLetter("undecodable", reason, time.time(), topic=topic, raw=message)
        await persistently("dead-lettering a message", lambda: self._deliver([letter]))
        metrics.DEAD_LETTERS.labels("undecodable").inc()

    async def _deliver(self, letters: list[DeadLetter]) -> None:
        sent = []
        try:
            for letter in letters:
                key = letter.chunk.account_id.encode() if letter.chunk else b""
                sent.append(await self._producer.send(self._topic, letter.to_bytes(), key))
        finally:
            results = await asyncio.gather(*sent, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


@asynccontextmanager
async def _pending(settings: Settings) -> AsyncIterator[tuple[AIOKafkaConsumer, list[Any]]]:
    """The dead letters after the replayer's committed offset, and the consumer holding them."""
    topic = settings.topic(constants.DEAD_LETTERS_TOPIC)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.topic(constants.DEAD_LETTER_REPLAY_GROUP),
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


@dataclass(frozen=True)
class Replayed:
    """What a replay did with the pending letters."""

    replayed: int  # chunks rewound and published again
    applied_meanwhile: int  # chunks whose batch was redelivered and applied after all
    undecodable: list[DeadLetter]  # kept on the topic, not replayable


async def replay(settings: Settings, pool: asyncpg.Pool) -> Replayed:
    """Re-drive every pending chunk, in the order the letters were written.

    A held action's chunks were dead-lettered in file order behind its first
    failed chunk, and go out again in that order to the account's partition:
    the rows are applied as if they had never failed, the first occurrence
    of a key winning.
    """
    topic = settings.topic(constants.CHUNKS_TOPIC)
    async with _pending(settings) as (consumer, records), Producer.open(settings) as producer:
        replayed, meanwhile, undecodable = 0, 0, []
        for record in records:
            letter = DeadLetter.from_bytes(record.value)
            if letter.chunk is None:
                undecodable.append(letter)
            elif await _rewind(pool, letter.chunk):
                # Keyed by account like every chunk: the account's partition, in order.
                chunk = letter.chunk
                await producer.send_and_wait(topic, chunk.to_bytes(), chunk.account_id.encode())
                replayed += 1
            else:
                meanwhile += 1
        if records:
            partition = TopicPartition(records[-1].topic, records[-1].partition)
            await consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "")})
        return Replayed(replayed, meanwhile, undecodable)


async def _rewind(pool: asyncpg.Pool, chunk: Chunk) -> bool:
    """Take a dead-lettered chunk out of the ledger and the counts; False if it was applied."""
    async with pool.acquire() as conn, conn.transaction():
        codes = await conn.fetchval(
            sql.postgres("chunk_ledger_rewind"), chunk.action_id, chunk.chunk_no
        )
        if codes is None:
            return False
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
    return True
