"""Apply chunks and publish their outcomes: shared by the Kafka agent and the drainer.

The batch processor waits out database outages and retries transient
failures; when a batch fails for good its rows fail, and its chunks are
dead-lettered for ``bulkflow dead-letters replay``.

Publishing the outcomes is retried at the fixed interval until the broker has
them, whatever the error: the batch is acknowledged when this returns, and
outcomes dropped here would be missing from ClickHouse for good. An error the
producer cannot recover from replaces it (``bulkflow/kafka.py``), so the
next attempt goes through a fresh one.
"""

from __future__ import annotations

import logging

from bulkflow import constants
from bulkflow.retry import persistently
from schemas.messages import Chunk, OutcomeBatch
from stream_agents.batch import BatchProcessor
from stream_agents.outcomes import OutcomePublisher

log = logging.getLogger(__name__)


class Applier:
    def __init__(
        self,
        processor: BatchProcessor,
        publisher: OutcomePublisher,
        *,
        interval: float = constants.RETRY_INTERVAL,
    ) -> None:
        self.processor = processor
        self._publisher = publisher
        self._interval = interval

    async def apply(self, chunks: list[Chunk]) -> None:
        try:
            outcomes = await self.processor.process(chunks)
        except Exception as exc:
            log.exception("a batch of %d chunks failed", len(chunks))
            outcomes = await self.processor.fail(chunks, exc)
        await self._publish(outcomes)

    async def _publish(self, outcomes: list[OutcomeBatch]) -> None:
        await persistently(
            f"publishing the outcomes of {len(outcomes)} chunks",
            lambda: self._publisher.publish(outcomes),
            interval=self._interval,
        )
