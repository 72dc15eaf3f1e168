"""A large CSV streams through the reader and the producer in bounded memory.

Real Postgres and Kafka, on a topic prefix of its own that no agent consumes:
the upload path alone, measured by this process's resident memory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bulkflow import constants
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from bulkflow.topics import ensure_topics
from ingest_api.actions import ActionStore
from ingest_api.csv_reader import CsvFormat, CsvReader
from ingest_api.publisher import ChunkProducer
from ingest_api.submission import Submitter
from schemas.bulk_action import ActionOptions

pytestmark = pytest.mark.anyio

UPLOAD_BYTES = 40 * 1024 * 1024  # ~440,000 rows
MAX_GROWTH = 40 * 1024 * 1024  # the file held in memory as rows would take ~10x its size


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def csv_body(size: int) -> AsyncIterator[bytes]:
    yield b"email,first_name,last_name,company\n"
    sent, row = 0, 0
    while sent < size:
        block = "".join(
            f"user{row + i}@example.com,First{i},Last{i},Company {i % 97}\n" for i in range(2000)
        ).encode()
        row += 2000
        sent += len(block)
        yield block


async def test_upload_memory_does_not_grow_with_the_file(database: Settings) -> None:
    # A prefix inside the run's own, so the session removes its topics too.
    settings = database.model_copy(
        update={"topic_prefix": f"{database.topic_prefix}memory-{uuid.uuid4().hex[:8]}."}
    )
    await ensure_topics(settings)
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss())
            await asyncio.sleep(0.05)

    async with connect_pool(settings, size=2) as pool, ChunkProducer.start(settings) as producer:
        store = ActionStore(pool)
        submitter = Submitter(store, producer)
        baseline = rss()
        sampler = asyncio.create_task(sample())
        try:
            async with CsvReader(
                csv_body(UPLOAD_BYTES), CsvFormat(), constants.ROWS_PER_CHUNK
            ) as reader:
                created = await submitter.submit_csv(
                    "acc_memory", "contact", "upsert", ActionOptions(), reader
                )
        finally:
            sampler.cancel()
        record = await store.get("acc_memory", created.record["id"])
    assert record is not None
    assert record["total_rows"] > 400_000
    growth = peak - baseline
    print(f"upload of {UPLOAD_BYTES / 2**20:.0f} MiB grew RSS by {growth / 2**20:.1f} MiB")
    assert growth < MAX_GROWTH, f"grew {growth / 2**20:.0f} MiB"
