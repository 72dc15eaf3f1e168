"""`bulkflow migrate` applies each migration once."""

from __future__ import annotations

import asyncpg
import pytest

from bulkflow import sql
from bulkflow.migrations import migrate_postgres
from bulkflow.settings import Settings
from bulkflow.topics import ensure_topics

pytestmark = pytest.mark.anyio


async def test_migrations_are_recorded_and_not_repeated(
    database: Settings, pool: asyncpg.Pool
) -> None:
    assert await migrate_postgres(database) == []
    assert await ensure_topics(database) == []
    recorded = [
        r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations ORDER BY version")
    ]
    assert recorded == [path.name for _, path in sql.migrations(sql.POSTGRES_DIR)]


def test_statements_split_on_line_ending_semicolons() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x int);\n\nSELECT ';' ;\n"
    assert sql.statements(script) == ["CREATE TABLE a (x int)", "SELECT ';'"]
