"""``bulkflow migrate``: Postgres migrations, ClickHouse DDL and Kafka topics.

Each ``sql/NNN_*.sql`` runs once, in its own transaction, recorded in
``schema_migrations``; an advisory lock keeps two migrators from interleaving.
ClickHouse DDL is idempotent (``IF NOT EXISTS``) and applied every time.
"""

from __future__ import annotations

import asyncpg

from bulkflow import constants, sql
from bulkflow.clickhouse import ClickHouse
from bulkflow.settings import Settings
from bulkflow.topics import ensure_topics


async def migrate_postgres(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", constants.MIGRATION_LOCK_KEY)
        await conn.execute(sql.postgres("schema_migrations_create"))
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, path in sql.migrations(sql.POSTGRES_DIR):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(sql.postgres("schema_migrations_record"), version, path.name)
            applied.append(f"postgres: {path.name}")
        return applied
    finally:
        await conn.close()


async def migrate(settings: Settings, *, clickhouse: bool = True) -> list[str]:
    applied = await migrate_postgres(settings)
    applied += [f"kafka: created topic {name}" for name in await ensure_topics(settings)]
    if clickhouse:
        async with ClickHouse.open(settings.clickhouse_dsn) as client:
            applied += await client.apply_migrations()
    return applied or ["nothing to apply"]
