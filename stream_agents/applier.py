"""Apply chunks and publish their outcomes: shared by the Kafka agent and the drainer.

Transient failures are retried by the batch processor; when they outlive the
retries the rows fail (``retries_exhausted``) and the chunks go to the
dead-letter topic for ``bulkflow dead-letters replay``.

Publishing the outcomes is retried at the fixed interval for as long as the
broker is unreachable: the batch is acknowledged when this returns, and
outcomes dropped here would be missing from ClickHouse for good, while without
a broker the agent cannot consume anything anyway. An error that retrying
cannot mend (a message too large, a closed producer, no authorization) is
logged and the outcomes given up on.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError, KafkaTimeoutError

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
        *,
        interval: float = constants.RETRY_INTERVAL,
    ) -> None:
        self.processor = processor
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._interval = interval

    async def apply(self, chunks: list[Chunk]) -> None:
        try:
            outcomes = await self.processor.process(chunks)
        except Exception as exc:
            log.exception("a batch of %d chunks failed", len(chunks))
            outcomes = await self.processor.fail(chunks, exc)
            if isinstance(exc, RetriesExhausted):
                await self._dead_letter(chunks, exc)
        await self._publish(outcomes)

    async def _dead_letter(self, chunks: list[Chunk], exc: RetriesExhausted) -> None:
        try:
            await self._dead_letters.send(chunks, exc.cause)
        except KafkaError:
            log.exception("could not dead-letter %d chunks", len(chunks))

    async def _publish(self, outcomes: list[OutcomeBatch]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._publisher.publish(outcomes)
                return
            except KafkaError as exc:
                if not _unreachable(exc):
                    log.exception("outcomes of %d chunks not published", len(outcomes))
                    return
                log.warning("publishing outcomes failed (attempt %d, %r); retrying", attempt, exc)
                await asyncio.sleep(self._interval)


def _unreachable(exc: KafkaError) -> bool:
    """The broker (or a partition's leader) did not answer: worth waiting for."""
    # A send that timed out is aiokafka's KafkaTimeoutError, not flagged retriable.
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
