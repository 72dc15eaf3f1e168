"""The applier's retry logic around a batch (Postgres and Kafka stand-ins: pure logic)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from schemas.messages import Chunk, OutcomeBatch
from stream_agents.applier import Applier
from stream_agents.batch import BatchProcessor
from stream_agents.outcomes import OutcomePublisher
from stream_agents.turn import Turn

pytestmark = pytest.mark.anyio

CHUNK = Chunk("a1", "acme", "contact", "upsert", 0, 1, [{"email": "a@x.io"}])
OUTCOMES = [OutcomeBatch("a1", "acme", "contact", "upsert", 0, 1, "c", {}, ["a@x.io"], {}, 1.0)]


class AppliedProcessor:
    async def process(
        self, chunks: Sequence[Chunk], *, turn: Turn | None = None, after: Turn | None = None
    ) -> list[OutcomeBatch]:
        return OUTCOMES


class FlakyPublisher:
    """Refuses the first ``failures`` publishes with ``error``."""

    def __init__(self, failures: int, error: type[KafkaError] = KafkaConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.published: list[list[OutcomeBatch]] = []
        self.drained: list[bool] = []

    async def publish(self, batches: Sequence[OutcomeBatch], *, drained: bool = False) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error()
        self.published.append(list(batches))
        self.drained.append(drained)


def applier(publisher: FlakyPublisher) -> Applier:
    return Applier(
        cast(BatchProcessor, AppliedProcessor()),
        cast(OutcomePublisher, publisher),
        interval=0,
    )


@pytest.mark.parametrize("error", [KafkaConnectionError, KafkaTimeoutError])
async def test_outcomes_are_published_once_the_broker_is_back(error: type[KafkaError]) -> None:
    # More failures than the batch's retry attempts: outcomes must not be dropped
    # (the batch is acknowledged when apply returns, and ClickHouse would miss them).
    publisher = FlakyPublisher(failures=5, error=error)
    await applier(publisher).apply([CHUNK])
    assert publisher.failures == 0
    assert publisher.published == [OUTCOMES]


async def test_an_error_the_producer_cannot_recover_from_is_retried_too() -> None:
    # The producer replaces itself after such an error (bulkflow/kafka.py): the
    # outcomes go through the fresh one instead of being dropped.
    publisher = FlakyPublisher(failures=2, error=MessageSizeTooLargeError)
    await applier(publisher).apply([CHUNK])
    assert publisher.published == [OUTCOMES]


async def test_the_outcomes_of_a_drained_batch_are_published_as_drained() -> None:
    publisher = FlakyPublisher(failures=0)
    await applier(publisher).apply([CHUNK])
    await applier(publisher).apply([CHUNK], drained=True)
    assert publisher.drained == [False, True]
