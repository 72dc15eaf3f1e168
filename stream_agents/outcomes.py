"""Publishes per-row outcomes to the outcomes topic and waits for the broker's ack.

The agents use their own producer rather than Faust's ``topic.send``: Faust
attaches sends made inside an event to the event's ack, while here the
outcomes must be durable before the batch that produced them is acknowledged.

A chunk's outcomes usually make one message. Outcomes that echo wide failed
rows are split into messages of consecutive rows below OUTCOME_TARGET_BYTES,
never dropped: the sink's view numbers each message's rows from its own
``first_row_no``, so the parts expand to exactly the rows of the whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

from bulkflow import constants
from bulkflow.kafka import Producer
from bulkflow.settings import Settings
from schemas.messages import OutcomeBatch

#: Room for a record's key and framing within the broker's message limit.
_ENVELOPE = 64 * 1024


class OutcomePublisher:
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings) -> AsyncIterator[OutcomePublisher]:
        async with Producer.open(settings) as producer:
            yield cls(producer, settings.topic(constants.OUTCOMES_TOPIC))

    async def publish(self, batches: Sequence[OutcomeBatch]) -> None:
        """Send every batch's outcomes; raise the first failure once all have settled."""
        sent = []
        try:
            for batch in batches:
                key = batch.account_id.encode()
                for message in messages(batch):
                    sent.append(await self._producer.send(self._topic, message, key))
        finally:
            results = await asyncio.gather(*sent, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def messages(batch: OutcomeBatch) -> Iterator[bytes]:
    """The batch encoded as messages of consecutive rows, each within the limits."""
    pending = [batch]
    while pending:
        part = pending.pop()
        if not part.codes:
            continue  # an end-of-upload marker: no rows, nothing to record
        encoded = part.to_bytes()
        if len(encoded) > constants.OUTCOME_TARGET_BYTES and len(part.codes) > 1:
            first, second = part.halves()
            pending += [second, first]
            continue
        if len(encoded) > constants.MAX_MESSAGE_BYTES - _ENVELOPE:
            encoded = part.without_input().to_bytes()  # one row's input too wide to echo
        yield encoded
