"""Publishes chunks to Kafka, keyed by account so an account keeps one partition.

The key is the account id's UTF-8 bytes and the partitioner aiokafka's default
(murmur2, as the Java client), so every producer maps an account to the same
partition and an account's chunks are consumed in submission order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from bulkflow import constants
from bulkflow.kafka import Producer
from bulkflow.settings import Settings
from schemas.messages import Chunk

#: None: Kafka's lz4 is aiokafka's, LZ4-HC at level 9, the slow kind. On the
#: bench's CSV (reading, cutting and producing 200,000 rows, three runs each)
#: it cost the API 0.8-1.1 us of CPU per row (5.2-5.5 against 4.2-4.4) and
#: the agents ~0.1 to undo, to take a chunk from 93 to 39 bytes a row. zstd
#: (three alternated million-row pairs) cost the API 0.7 us a row more and
#: saved the broker none it could measure (Kafka 1.9-2.8 against 1.8-2.6).
_CHUNK_COMPRESSION: str | None = None
#: A partition's chunks share a produce request, up to this many bytes of them.
#: With aiokafka's 16 KiB, every chunk (~46 KB at the bench's 500 rows) went
#: in a request of its own, and per request the broker and the API pay more
#: than per byte. At 1 MiB (four alternated million-row pairs) Kafka took
#: 0.8-1.3 us of CPU a row against 2.2-3.3 and the API 1.9-2.5 against 3.0-4.4,
#: but the API's peak RSS rose from ~145 to 149.2-149.7 MB, at its 150 MB
#: budget; 512 KiB kept most of it (Kafka 0.8, the API 1.7 us and 148.0 MB),
#: 256 KiB less (Kafka 1.1, the API 2.1 us and 144.8 MB). The topic takes
#: batches up to MAX_MESSAGE_BYTES; the window of sends in flight still bounds
#: what an upload holds.
_CHUNK_BATCH_BYTES = 512 * 1024


class ChunkSink(Protocol):
    """Where a submission's chunks go: Kafka now, or storage until scheduled."""

    published_rows: int

    async def send(self, chunk: Chunk, encoded: bytes | None = None) -> None: ...

    async def flush(self) -> None: ...


class ChunkProducer:
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings) -> AsyncIterator[ChunkProducer]:
        """Chunks wait out a broker outage of up to UPLOAD_PATIENCE: meanwhile the
        window of sends in flight fills, and the upload's body waits."""
        async with Producer.open(
            settings,
            patience=constants.UPLOAD_PATIENCE,
            compression=_CHUNK_COMPRESSION,
            batch_bytes=_CHUNK_BATCH_BYTES,
        ) as producer:
            yield cls(producer, settings.topic(constants.CHUNKS_TOPIC))

    def publisher(self) -> Publisher:
        return Publisher(self._producer, self._topic)


class Publisher:
    """Pipelined sends for one request: a window of chunks in flight, all awaited by ``flush``."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: deque[asyncio.Future[None]] = deque()
        self.published_rows = 0

    async def send(self, chunk: Chunk, encoded: bytes | None = None) -> None:
        value = chunk.to_bytes() if encoded is None else encoded
        future = await self._producer.send(self._topic, value, key=chunk.account_id.encode())
        self._pending.append(future)
        self.published_rows += len(chunk.rows)
        while len(self._pending) > constants.PUBLISH_IN_FLIGHT:
            await self._pending.popleft()

    async def flush(self) -> None:
        """Wait for every send; the first failure is raised once all have settled."""
        pending, self._pending = self._pending, deque()
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
