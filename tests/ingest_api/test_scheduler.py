"""The scheduler fires due actions once, also when every process was down at the due time.

In a database of their own (``isolated``): the session server's scheduler never sees them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bulkflow import constants
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from ingest_api.actions import ActionStore
from ingest_api.publisher import ChunkProducer, Publisher
from ingest_api.scheduler import Scheduler
from schemas.bulk_action import ActionOptions
from schemas.messages import Chunk

pytestmark = pytest.mark.anyio


async def published(settings: Settings) -> int:
    topic = settings.topic(constants.CHUNKS_TOPIC)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_due_while_down_fires_once_at_start(isolated: Settings) -> None:
    async with connect_pool(isolated, size=4) as pool:
        store = ActionStore(pool)
        due_at = datetime.now(UTC) + timedelta(seconds=1)
        created = await store.create(
            account_id="acc_sched",
            entity="contact",
            action="upsert",
            source="json",
            options=ActionOptions(),
            total_rows=1_000,
            columns=["email"],
            scheduled_for=due_at,
        )
        action_id = str(created.record["id"])
        assert created.record["status"] == "scheduled"
        writer = store.scheduled_writer()
        for n in range(2):
            rows = [{"email": f"s{n}-{i}@example.com"} for i in range(500)]
            await writer.send(
                Chunk(action_id, "acc_sched", "contact", "upsert", n, 1 + 500 * n, rows)
            )
        await writer.flush()

        await asyncio.sleep(1.5)  # every process is "down" when the action falls due
        async with ChunkProducer.start(isolated) as producer:
            replicas = [Scheduler(pool, producer), Scheduler(pool, producer)]  # restarted, twice
            fired = await asyncio.gather(*(r.fire_due() for r in replicas))
            assert sorted(fired) == [0, 1]  # one replica fires it
            assert await replicas[0].fire_due() == 0  # and it is not fired again
        status = await pool.fetchval(
            "SELECT status FROM bulk_actions WHERE id = $1", created.record["id"]
        )
        assert status == "queued"
        assert await pool.fetchval("SELECT count(*) FROM scheduled_chunks") == 0
    assert await published(isolated) == 2


class _UploadStillStreaming:
    """A producer whose flush lets the upload store one more chunk, as a slow upload would."""

    def __init__(self, producer: ChunkProducer, late: Chunk, store: ActionStore) -> None:
        self._producer, self._late, self._store = producer, late, store

    def publisher(self) -> Publisher:
        publisher = self._producer.publisher()
        flush, writer = publisher.flush, self._store.scheduled_writer()

        async def flush_then_store_late_chunk() -> None:
            await flush()
            await writer.send(self._late)
            await writer.flush()

        publisher.flush = flush_then_store_late_chunk  # type: ignore[method-assign]
        return publisher


async def test_chunks_stored_while_firing_go_out_next(isolated: Settings) -> None:
    async with connect_pool(isolated, size=4) as pool:
        store = ActionStore(pool)
        created = await store.create(
            account_id="acc_sched",
            entity="contact",
            action="upsert",
            source="csv",
            options=ActionOptions(),
            total_rows=None,
            columns=["email"],
            scheduled_for=datetime.now(UTC) - timedelta(seconds=1),  # due during its upload
        )
        action_id = str(created.record["id"])

        def chunk(n: int) -> Chunk:
            rows = [{"email": f"late{n}-{i}@example.com"} for i in range(10)]
            return Chunk(action_id, "acc_sched", "contact", "upsert", n, 1 + 10 * n, rows)

        writer = store.scheduled_writer()
        await writer.send(chunk(0))
        await writer.flush()
        async with ChunkProducer.start(isolated) as producer:
            scheduler = Scheduler(pool, _UploadStillStreaming(producer, chunk(1), store))  # type: ignore[arg-type]
            assert await scheduler.fire_due() == 1
            # The chunk stored after the pass read the table is still there ...
            assert await pool.fetchval("SELECT array_agg(chunk_no) FROM scheduled_chunks") == [1]
            assert await Scheduler(pool, producer).fire_due() == 1  # ... and goes out next
        assert await pool.fetchval("SELECT count(*) FROM scheduled_chunks") == 0
    assert await published(isolated) == 2
