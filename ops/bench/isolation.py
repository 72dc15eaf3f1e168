"""A run of its own: a fresh database, topic prefix, ClickHouse path and ports.

The benchmark and the fault suite start real processes against shared
services; each run gets settings nobody else uses, so runs are comparable,
never see each other's data and leave nothing behind (:func:`release`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from bulkflow.migrations import migrate_postgres
from bulkflow.settings import Settings
from bulkflow.topics import delete_topics, ensure_topics
from ops.bench.fleet import free_port

UNLIMITED = 1_000_000_000  # rows (or requests) per minute: runs measure the pipeline, not limits


async def isolated_settings(settings: Settings, work: Path, name: str) -> Settings:
    """Settings for one run named ``name``: its database created and migrated, its topics made."""
    run = uuid.uuid4().hex[:8]
    database = f"bulkflow_{name}_{run}"
    dsn = urlsplit(settings.postgres_dsn.get_secret_value())
    isolated = settings.model_copy(
        update={
            "postgres_dsn": SecretStr(urlunsplit(dsn._replace(path=f"/{database}"))),
            "topic_prefix": f"{name}-{run}.",
            "clickhouse_url": SecretStr(f"chdb://{work / 'clickhouse'}"),
            "rows_per_minute": UNLIMITED,
            "api_writes_per_minute": UNLIMITED,
            "api_write_burst": 1_000,
            "api_reads_per_minute": UNLIMITED,
            "api_read_burst": 100_000,
            "api_port": free_port(),
            "embedded_clickhouse_port": free_port(),
            "state_dir": work / "state",
        }
    )
    admin = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    await migrate_postgres(isolated)
    await ensure_topics(isolated)
    return isolated


async def release(settings: Settings, isolated: Settings) -> None:
    """Drop the run's database (connecting as ``settings``, which made it) and its topics."""
    await _drop_database(settings, isolated)
    await delete_topics(isolated)


async def _drop_database(settings: Settings, isolated: Settings) -> None:
    name = urlsplit(isolated.postgres_dsn.get_secret_value()).path.lstrip("/")
    admin = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
