"""Helpers for tests that drive the running server: bounded polling, no fixed sleeps."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bulkflow import constants
from bulkflow.settings import Settings
from ingest_api.accounts import create_account

PATIENCE = 120.0  # seconds a pipeline step may take on a busy machine
POLL = 0.2  # seconds between polls


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``bulkflow ARGS`` as the user runs it, a process of its own; its output as text.

    ``env`` replaces the environment (None: this process's); the caller checks
    the return code, so a failure shows its output.
    """
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def account_id() -> str:
    """A fresh account id for tests below the API (no key needed)."""
    return f"acc_{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Tenant:
    """An account with an API key, made through the real account code."""

    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


async def new_tenant(pool: asyncpg.Pool) -> Tenant:
    account = await create_account(pool, "test")
    return Tenant(account.id, account.api_key)


async def settle() -> None:
    """Let the ready tasks run a while, for checks that something did not happen.

    For code that waits only on its own events and tasks, never on I/O or a
    clock: each step it could take is a loop iteration away, so no load on
    the machine makes this miss one.
    """
    for _ in range(20):
        await asyncio.sleep(0)


async def eventually(probe: Any, what: str) -> Any:
    """Poll ``probe()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + PATIENCE
    while not (value := await probe()):
        assert time.monotonic() < deadline, f"never saw {what}"
        await asyncio.sleep(0.2)
    return value


async def wait_for_status(
    api: httpx.AsyncClient, action_id: str, tenant: Tenant, *statuses: str
) -> dict[str, Any]:
    wanted = statuses or ("completed", "failed")
    deadline = time.monotonic() + PATIENCE
    while True:
        response = await api.get(f"/v1/bulk-actions/{action_id}", headers=tenant.headers)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in wanted:
            return body
        assert time.monotonic() < deadline, f"still {body['status']}: {body}"
        await asyncio.sleep(POLL)


async def wait_for_stats(
    api: httpx.AsyncClient, action_id: str, tenant: Tenant, rows: int
) -> dict[str, Any]:
    """Stats once ClickHouse holds an outcome for each of ``rows`` rows."""
    deadline = time.monotonic() + PATIENCE
    while True:
        response = await api.get(f"/v1/bulk-actions/{action_id}/stats", headers=tenant.headers)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["recorded_rows"] >= rows:
            return body
        assert time.monotonic() < deadline, f"ClickHouse has {body['recorded_rows']} of {rows}"
        await asyncio.sleep(POLL)


async def submit_json(
    api: httpx.AsyncClient,
    tenant: Tenant,
    rows: list[dict[str, Any]],
    action: str = "upsert",
    **extra: Any,
) -> dict[str, Any]:
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": action, "rows": rows, **extra},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def chunk_topic_size(settings: Settings) -> int:
    """Messages ever written to the chunk topic (sum of end offsets)."""
    topic = settings.topic(constants.CHUNKS_TOPIC)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        offsets = await consumer.end_offsets(partitions)
        return sum(offsets.values())
    finally:
        await consumer.stop()


async def produce_raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()
