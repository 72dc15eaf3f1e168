"""Gauges the agents sample now and then: consumer lag per partition, backlog per account.

Sampled every ``GAUGE_SAMPLE_EVERY`` seconds by a background loop, never on
the hot path. Lag is the broker's high-water mark minus what this process's
consumer has committed (what it has not yet applied, or applied but not yet
acknowledged), for the partitions assigned to it: summed over the replicas of
a consumer group, each partition counts once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from bulkflow import constants, metrics, sql

log = logging.getLogger(__name__)


async def sample_consumer_lag(app: Any) -> None:
    """Set ``bulkflow_consumer_lag`` for the partitions of a running Faust app."""
    consumer = app.consumer
    assigned = consumer.assignment()
    metrics.CONSUMER_LAG.clear()  # partitions given to another replica drop out
    for tp in assigned:
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = consumer._committed_offset.get(tp)  # the last acknowledged offset
        if committed is not None:
            done = committed + 1
        else:
            done = await consumer.position(tp)  # nothing committed by us yet: what we read
            if done is None:
                continue
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - done))


async def sample_backlog(pool: asyncpg.Pool) -> None:
    """Set ``bulkflow_backlog_chunks`` for the accounts with the deepest backlogs."""
    rows = await pool.fetch(sql.postgres("chunk_backlog_depths"))
    depths = metrics.top_accounts({r["account_id"]: r["chunks"] for r in rows})
    metrics.BACKLOG_CHUNKS.clear()
    for account, chunks in depths.items():
        metrics.BACKLOG_CHUNKS.labels(account).set(chunks)


async def sample_forever(app: Any, pool: asyncpg.Pool | None) -> None:
    """Both gauges, every GAUGE_SAMPLE_EVERY seconds, until cancelled."""
    while True:
        try:
            await sample_consumer_lag(app)
            if pool is not None:
                await sample_backlog(pool)
        except Exception as exc:  # a gauge is not worth a traceback per sample
            log.debug("sampling the gauges failed: %r", exc)
        await asyncio.sleep(constants.GAUGE_SAMPLE_EVERY)
