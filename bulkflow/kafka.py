"""The one way bulkflow produces to Kafka: durable, idempotent, compressed, and replaceable.

Message sizes are bounded end to end: the project sets ``max.message.bytes``
on its own topics (``bulkflow/topics.py``) to ``MAX_MESSAGE_BYTES``, the
producer refuses anything larger before it is sent (so no request reaches the
broker to be refused there), and whatever bulkflow publishes is cut below it
(chunks by rows and bytes, outcome messages split).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from bulkflow import constants
from bulkflow.settings import Settings

log = logging.getLogger(__name__)

#: A Kafka record header: its name and value.
Header = tuple[str, bytes]

_STOP_TIMEOUT = 10.0  # seconds a replaced producer gets to stop
#: aiokafka's default; the agents' sends are retried after it anyway.
_PATIENCE = 40.0
#: Kafka's codec for a producer's batches unless it says otherwise. lz4: JSON
#: (outcomes, dead letters) shrinks 3-5x for a few percent of a core; the
#: broker keeps the batches as they come and consumers decompress.
LZ4 = "lz4"
#: Seconds a batch of messages waits for more: lets a burst of chunks share requests.
LINGER = 0.005
#: Bytes of messages a partition's batch takes at most (aiokafka's default). A
#: message larger than this goes in a batch of its own, so one request per message.
BATCH_BYTES = 16 * 1024


async def _started(
    settings: Settings,
    patience: float,
    compression: str | None,
    linger: float,
    batch_bytes: int,
) -> AIOKafkaProducer:
    """acks=all + idempotence: an acknowledged message is on the broker exactly once.

    A message waits up to ``patience`` seconds for the broker (aiokafka's
    request timeout is also how long a queued batch may wait for a leader).
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=int(linger * 1000),
        max_batch_size=batch_bytes,
        max_request_size=constants.MAX_MESSAGE_BYTES,
        compression_type=compression,
        request_timeout_ms=int(patience * 1000),
    )
    await producer.start()
    return producer


class Producer:
    """An idempotent producer, replaced when a send fails for good.

    Once a send to a partition has failed for good (the broker refused it,
    or the producer's sequence numbers no longer line up), aiokafka's
    idempotent producer fails every later send to that partition
    (``OutOfOrderSequenceNumber``): one request's problem would become the
    problem of every account on the partition. The failed send's caller
    still gets the error; later sends go through a fresh producer.
    """

    def __init__(
        self,
        settings: Settings,
        started: AIOKafkaProducer,
        patience: float,
        compression: str | None = LZ4,
        linger: float = LINGER,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._settings = settings
        self._current = started
        self._patience = patience
        self._compression = compression
        self._linger = linger
        self._batch_bytes = batch_bytes
        self._replacing = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        patience: float = _PATIENCE,
        compression: str | None = LZ4,
        linger: float = LINGER,
        batch_bytes: int = BATCH_BYTES,
    ) -> AsyncIterator[Producer]:
        """A started producer; ``patience``: seconds a send waits for an unreachable broker;
        ``compression``: Kafka's codec for its batches (None: sent as they are);
        ``linger``: seconds a batch waits for more messages before it is sent;
        ``batch_bytes``: bytes of one partition's messages a batch (and so a
        request) carries at most."""
        started = await _started(settings, patience, compression, linger, batch_bytes)
        producer = cls(settings, started, patience, compression, linger, batch_bytes)
        try:
            yield producer
        finally:
            await producer._current.stop()

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Sequence[Header] = ()
    ) -> asyncio.Future[None]:
        """Queue one message; the returned future resolves once the broker has it.

        A message over ``MAX_MESSAGE_BYTES`` raises ``MessageSizeTooLargeError``
        here, before anything is sent.
        """
        producer = self._current
        sent = await producer.send(topic, value, key=key, headers=list(headers) or None)
        return asyncio.ensure_future(self._settled(producer, sent))

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        await (await self.send(topic, value, key))

    async def _settled(self, producer: AIOKafkaProducer, sent: asyncio.Future[object]) -> None:
        try:
            await sent
        except KafkaError as exc:
            if not unreachable(exc):
                await self._replace(producer, exc)
            raise

    async def _replace(self, failed: AIOKafkaProducer, exc: KafkaError) -> None:
        async with self._replacing:
            if failed is not self._current:
                return  # another failed send replaced it already
            log.warning("replacing the Kafka producer after %r", exc)
            self._current = await _started(
                self._settings,
                self._patience,
                self._compression,
                self._linger,
                self._batch_bytes,
            )
        try:
            await asyncio.wait_for(failed.stop(), _STOP_TIMEOUT)
        except (KafkaError, TimeoutError):
            log.warning("the replaced Kafka producer did not stop cleanly", exc_info=True)


def unreachable(exc: KafkaError) -> bool:
    """The broker (or a partition's leader) did not answer: worth waiting for.

    The producer itself is then fine. A send that timed out is aiokafka's
    ``KafkaTimeoutError``, which is not flagged retriable.
    """
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
