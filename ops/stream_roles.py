"""The agents and the sink, wired for ``bulkflow serve``.

Apart from ``ops/server.py`` so that a process without them (an API replica)
never loads Faust, its web stack and the agents' code: about 10 MB of the
API's resident memory, which issue 17 bounds.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AsyncExitStack

import asyncpg
from faust.contrib.asgi import faust_app_running
from redis.asyncio import Redis

from bulkflow import constants
from bulkflow.background import background
from bulkflow.clickhouse import ClickHouse
from bulkflow.kafka import Producer
from bulkflow.rate_limit import TokenBucket
from bulkflow.settings import Role, Settings
from ingest_api.publisher import ChunkProducer
from ingest_api.scheduler import Scheduler
from stream_agents.app import AgentResources, ChunkHandler
from stream_agents.app import create_app as create_agents
from stream_agents.applier import Applier
from stream_agents.backlog import BacklogDrainer
from stream_agents.batch import BatchProcessor
from stream_agents.dead_letters import DeadLetterQueue
from stream_agents.gauges import sample_forever
from stream_agents.outcomes import OutcomePublisher
from stream_agents.sink import OutcomeSink
from stream_agents.throttle import Throttle


async def start_stream_roles(
    stack: AsyncExitStack,
    settings: Settings,
    pool: asyncpg.Pool,
    clickhouse: ClickHouse | None,
    roles: Collection[Role],
) -> None:
    """Start the agents and/or the sink of ``roles``; ``stack`` stops them."""
    chunks = None
    if "agents" in roles:
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        stack.push_async_callback(redis.aclose)
        throttle = Throttle(
            pool, TokenBucket(redis, constants.ROWS_BUCKET_PREFIX), settings.rows_per_minute
        )
        dead_letters = await _dead_letters(stack, settings)
        applier = Applier(
            BatchProcessor(pool, dead_letters),
            await stack.enter_async_context(OutcomePublisher.start(settings)),
        )
        chunks = ChunkHandler(
            applier=applier,
            throttle=throttle,
            dead_letters=dead_letters,
            topic=settings.topic(constants.CHUNKS_TOPIC),
        )
        drainer = BacklogDrainer(pool, throttle, applier)
        await stack.enter_async_context(drainer.running())
        producer = await stack.enter_async_context(ChunkProducer.start(settings))
        await stack.enter_async_context(Scheduler(pool, producer).running())
    sink = None
    if "sink" in roles:
        assert clickhouse is not None
        sink = OutcomeSink(
            clickhouse,
            await _dead_letters(stack, settings),
            settings.topic(constants.OUTCOMES_TOPIC),
        )
    faust_app = create_agents(settings, AgentResources(chunks=chunks, sink=sink))
    await stack.enter_async_context(faust_app_running(faust_app))
    gauges = sample_forever(faust_app, pool if chunks is not None else None)
    await stack.enter_async_context(background(gauges, name="gauges"))


async def _dead_letters(stack: AsyncExitStack, settings: Settings) -> DeadLetterQueue:
    producer = await stack.enter_async_context(Producer.open(settings))
    return DeadLetterQueue(producer, settings.topic(constants.DEAD_LETTERS_TOPIC))
