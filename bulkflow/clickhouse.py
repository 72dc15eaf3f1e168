"""One ClickHouse client per process, embedded (chdb) or a server (HTTP).

clickhouse-connect is synchronous and the embedded engine is process-global,
so every call runs on one dedicated worker thread: the event loop never blocks
and the engine is never entered from two threads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect

from bulkflow import sql


def _connect(dsn: str) -> Any:
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)


class ClickHouse:
    def __init__(self, client: Any, executor: ThreadPoolExecutor) -> None:
        self._client = client
        self._executor = executor

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str) -> AsyncIterator[ClickHouse]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        loop = asyncio.get_running_loop()
        try:
            client = await loop.run_in_executor(executor, _connect, dsn)
            try:
                yield cls(client, executor)
            finally:
                await loop.run_in_executor(executor, client.close)
        finally:
            executor.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def apply_migrations(self) -> list[str]:
        applied = []
        for _, path in sql.migrations(sql.CLICKHOUSE_DIR):
            for statement in sql.statements(path.read_text()):
                await self._run(self._client.command, statement)
            applied.append(f"clickhouse: ensured {path.name}")
        return applied

    async def insert_json(self, table: str, lines: bytes) -> None:
        """Insert JSONEachRow data: ClickHouse parses it, no Python per row."""
        await self._run(self._client.raw_insert, table, insert_block=lines, fmt="JSONEachRow")

    async def rows(self, query: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a named query from ``clickhouse/queries``."""
        result = await self._run(self._client.query, sql.clickhouse(query), parameters=parameters)
        return list(result.result_rows)
