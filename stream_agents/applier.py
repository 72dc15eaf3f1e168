"""Apply chunks and publish their outcomes: shared by the Kafka agent and the drainer.

Transient failures are retried by the batch processor; when they outlive the
retries the rows fail (``retries_exhausted``) and the chunks go to the
dead-letter topic for ``bulkflow dead-letters replay``.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from bulkflow import constants
from bulkflow.dead_letters import DeadLetterQueue
from schemas.messages import Chunk, OutcomeBatch
from stream_agents.batch import BatchProcessor
from stream_agents.errors import RetriesExhausted
from stream_agents.outcomes import OutcomePublisher

log = logging.getLogger(__name__)


class Applier:
    def __init__(
        self,
        processor: BatchProcessor,
        publisher: OutcomePublisher,
        dead_letters: DeadLetterQueue,
    ) -> None:
        self.processor = processor
        self._publisher = publisher
        self._dead_letters = dead_letters

    async def apply(self, chunks: list[Chunk]) -> None:
        try:
            outcomes = await self.processor.process(chunks)
        except Exception as exc:
            log.exception("a batch of %d chunks failed", len(chunks))
            outcomes = await self.processor.fail(chunks, exc)
            if isinstance(exc, RetriesExhausted):
                await self._dead_letter(chunks, exc)
        await self._publish(outcomes, len(chunks))

    async def _dead_letter(self, chunks: list[Chunk], exc: RetriesExhausted) -> None:
        try:
            await self._dead_letters.send(chunks, exc.cause)
        except KafkaError:
            log.exception("could not dead-letter %d chunks", len(chunks))

    async def _publish(self, outcomes: list[OutcomeBatch], chunks: int) -> None:
        for attempt in range(1, constants.RETRY_ATTEMPTS + 1):
            try:
                await self._publisher.publish(outcomes)
                return
            except KafkaError:
                log.exception("publishing outcomes failed (attempt %d)", attempt)
                await asyncio.sleep(constants.RETRY_INTERVAL)
        # The broker stayed unreachable: Postgres has the effects, the counts and
        # the ledger (which can rebuild these outcomes), but ClickHouse misses them.
        log.error("outcomes of %d chunks not published", chunks)
