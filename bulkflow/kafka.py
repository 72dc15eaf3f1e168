"""The one way bulkflow opens a Kafka producer: durable and idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from bulkflow.settings import Settings

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a chunk of wide rows stays far below this


@asynccontextmanager
async def open_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """acks=all + idempotence: an acknowledged message is on the broker exactly once."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,  # ms: lets a burst of chunks share requests
        max_request_size=MAX_MESSAGE_BYTES,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
