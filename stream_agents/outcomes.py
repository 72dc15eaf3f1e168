"""Publishes per-row outcomes to the outcomes topic and waits for the broker's ack.

The agents use their own aiokafka producer rather than Faust's ``topic.send``:
Faust attaches sends made inside an event to the event's ack, while here the
outcomes must be durable before the batch that produced them is acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from bulkflow import constants
from bulkflow.kafka import open_producer
from bulkflow.settings import Settings
from schemas.messages import OutcomeBatch


class OutcomePublisher:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings) -> AsyncIterator[OutcomePublisher]:
        async with open_producer(settings) as producer:
            yield cls(producer, settings.topic(constants.OUTCOMES_TOPIC))

    async def publish(self, batches: Sequence[OutcomeBatch]) -> None:
        futures = [
            await self._producer.send(self._topic, b.to_bytes(), key=b.account_id.encode())
            for b in batches
        ]
        await asyncio.gather(*futures)
