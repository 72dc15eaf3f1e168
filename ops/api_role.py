"""The API, wired for ``bulkflow serve``.

Apart from ``ops/server.py`` so that a process without it (an agent replica, the
sink) never loads starlette's app, the OpenAPI page and its YAML, the CSV reader
and the API's routes: ~10 MB of an agent's resident memory, which issue 17 bounds.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import asyncpg
from redis.asyncio import BlockingConnectionPool, Redis
from starlette.types import ASGIApp

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from bulkflow.rate_limit import Rate, TokenBucket
from bulkflow.settings import Settings
from ingest_api.actions import ActionStore
from ingest_api.admin import Admin
from ingest_api.app import create_app as create_api
from ingest_api.auth import Authenticator
from ingest_api.live import ChangeStream, LiveHub
from ingest_api.publisher import ChunkProducer
from ingest_api.reports import Reports
from ingest_api.request_limits import RequestLimits, address_rates
from ingest_api.routes import ApiResources
from ingest_api.submission import Submitter
from ingest_api.webhooks import WebhookDeliverer


async def open_api(
    stack: AsyncExitStack, settings: Settings, pool: asyncpg.Pool, clickhouse: ClickHouse
) -> ASGIApp:
    """The API's app, its resources (Redis, the chunk producer, the live
    changes, webhook deliveries) entered into ``stack``."""
    # Requests beyond the pool's connections wait their turn (up to the
    # timeout) instead of failing: redis-py's plain pool refuses the
    # 101st concurrent request outright, which made writes 503.
    api_redis = Redis.from_pool(
        BlockingConnectionPool.from_url(
            settings.redis_url.get_secret_value(),
            max_connections=constants.API_REDIS_CONNECTIONS,
            timeout=constants.API_REDIS_TIMEOUT,
            socket_connect_timeout=constants.API_REDIS_TIMEOUT,
            socket_timeout=constants.API_REDIS_TIMEOUT,
        )
    )
    stack.push_async_callback(api_redis.aclose)
    limits = RequestLimits(
        TokenBucket(api_redis, constants.REQUESTS_BUCKET_PREFIX),
        writes=Rate(settings.api_writes_per_minute, settings.api_write_burst),
        reads=Rate(settings.api_reads_per_minute, settings.api_read_burst),
        addresses=address_rates(settings),
    )
    producer = await stack.enter_async_context(ChunkProducer.start(settings))
    store = ActionStore(pool)
    live = await stack.enter_async_context(
        ChangeStream(settings.postgres_dsn.get_secret_value(), LiveHub(pool)).running()
    )
    deliverer = WebhookDeliverer(
        store,
        base_url=settings.public_api_url,
        rows_per_minute=settings.rows_per_minute,
        first_retry=settings.webhook_first_retry,
        allow_private=settings.webhook_allow_private,
    )
    await stack.enter_async_context(deliverer.running())
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return create_api(
        ApiResources(
            auth=Authenticator(pool),
            store=store,
            submitter=Submitter(
                store, producer, webhook_allow_private=settings.webhook_allow_private
            ),
            reports=Reports(clickhouse),
            limits=limits,
            rows_per_minute=settings.rows_per_minute,
            live=live,
            entity_write_timeout=settings.entity_write_timeout,
        ),
        Admin(pool, admin_token),
    )
