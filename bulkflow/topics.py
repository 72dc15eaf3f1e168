"""The Kafka topics bulkflow needs, created explicitly with their partition counts.

The broker does not auto-create topics: a topic created by a first produce
would get the broker's default partition count, and the chunk topic's count
decides how far the agents scale. The project also sets each topic's
``max.message.bytes`` itself, rather than trusting the broker's default
(1 MB): the producers and the chunk cutter work to ``MAX_MESSAGE_BYTES``.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from bulkflow import constants
from bulkflow.settings import Settings

#: The configuration bulkflow gives each of its topics.
TOPIC_CONFIG = {"max.message.bytes": str(constants.MAX_MESSAGE_BYTES)}


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic and its partition count (dead letters are few: one partition, in order)."""
    return {
        settings.topic(constants.CHUNKS_TOPIC): settings.topic_partitions,
        settings.topic(constants.OUTCOMES_TOPIC): settings.topic_partitions,
        settings.topic(constants.DEAD_LETTERS_TOPIC): 1,
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics and set every topic's configuration; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = topic_partitions(settings)
        missing = [name for name in wanted if name not in existing]
        if missing:
            topics = [
                NewTopic(name, wanted[name], replication_factor=1, topic_configs=TOPIC_CONFIG)
                for name in missing
            ]
            try:
                await admin.create_topics(topics)
            except TopicAlreadyExistsError:
                pass  # another process created them meanwhile
        # Topics made by an earlier version, or by hand: the same limits.
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, TOPIC_CONFIG) for name in wanted]
        )
        return missing
    finally:
        await admin.close()


async def delete_topics(settings: Settings) -> list[str]:
    """Delete every topic named with the settings' prefix; return their names.

    For runs that made topics of their own (a bench, a test session): the
    broker keeps a directory per partition until a topic is deleted.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()


async def topic_config(settings: Settings, name: str) -> dict[str, str]:
    """A topic's configuration as the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [(_, _, _, _, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()
