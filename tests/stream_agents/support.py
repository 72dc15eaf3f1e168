"""Helpers for the agents' tests: chunks, records read back from a topic, and a
dead-letter queue that keeps what it is sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from bulkflow.settings import Settings
from schemas.messages import Chunk


def chunk(
    action_id: str,
    acct: str,
    chunk_no: int,
    first_row_no: int,
    rows: list[dict[str, Any]],
    action: str = "upsert",
) -> Chunk:
    return Chunk(action_id, acct, "contact", action, chunk_no, first_row_no, rows)


async def records_on(
    settings: Settings,
    topic: str,
    expected: int,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda record: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``expected`` records of the topic (of those ``keep`` keeps), in the
    order of their partition."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        found: list[ConsumerRecord[bytes, bytes]] = []
        while len(found) < expected:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"only {len(found)} of {expected} records on {topic}"
            for records in batches.values():
                found += filter(keep, records)
        return found
    finally:
        await consumer.stop()


class KeptLetters:
    """Stands in for the Kafka dead-letter topic where a test needs no broker."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.errors: list[BaseException] = []

    async def send_chunks(self, chunks: Sequence[Chunk], error: BaseException) -> None:
        self.chunks += chunks
        self.errors.append(error)
