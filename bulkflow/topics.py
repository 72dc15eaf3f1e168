"""The Kafka topics bulkflow needs, created explicitly with their partition counts.

The broker does not auto-create topics: a topic created by a first produce
would get the broker's default partition count, and the chunk topic's count
decides how far the agents scale.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bulkflow import constants
from bulkflow.settings import Settings


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic and its partition count (dead letters are few: one partition, in order)."""
    return {
        settings.topic(constants.CHUNKS_TOPIC): settings.topic_partitions,
        settings.topic(constants.OUTCOMES_TOPIC): settings.topic_partitions,
        settings.topic(constants.DEAD_LETTERS_TOPIC): 1,
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; return the names of those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = topic_partitions(settings)
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        topics = [
            NewTopic(name, num_partitions=wanted[name], replication_factor=1) for name in missing
        ]
        try:
            await admin.create_topics(topics)
        except TopicAlreadyExistsError:
            pass  # another process created them meanwhile
        return missing
    finally:
        await admin.close()
