"""The project's producer on the real broker: a send the broker refused spoils no later send."""

from __future__ import annotations

import os

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from bulkflow.kafka import Producer
from bulkflow.settings import Settings

pytestmark = pytest.mark.anyio


async def tiny_topic(settings: Settings) -> str:
    """A topic whose broker-side limit is far below what the producer allows itself."""
    name = settings.topic("tiny")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topic = NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "1024"})
        await admin.create_topics([topic])
    finally:
        await admin.close()
    return name


async def test_after_a_refused_send_the_next_one_goes_through(isolated: Settings) -> None:
    topic = await tiny_topic(isolated)
    async with Producer.open(isolated) as producer:
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(topic, os.urandom(4_000), key=b"acme")  # incompressible
        # The idempotent producer that was refused would fail every later send to
        # the partition (OutOfOrderSequenceNumber); its replacement does not.
        for n in range(3):
            await producer.send_and_wait(topic, f"small {n}".encode(), key=b"acme")
