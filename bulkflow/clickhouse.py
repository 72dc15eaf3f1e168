"""One ClickHouse client per process, embedded (chdb) or a server (HTTP).

clickhouse-connect is synchronous and the embedded engine is process-global,
so every call runs on one dedicated worker thread: the event loop never blocks
and the engine is never entered from two threads at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.exceptions import OperationalError

from bulkflow import sql

T = TypeVar("T")
log = logging.getLogger(__name__)
_RECONNECT_EVERY = 0.5  # seconds


def _connect(dsn: str) -> Any:
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)


async def _connected(
    loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, dsn: str, wait: float
) -> Any:
    deadline = loop.time() + wait
    while True:
        try:
            return await loop.run_in_executor(executor, _connect, dsn)
        except OperationalError:
            if loop.time() >= deadline:
                raise
            log.info("ClickHouse at %s is not answering yet; retrying", _host(dsn))
            await asyncio.sleep(_RECONNECT_EVERY)


def _host(dsn: str) -> str:
    """The DSN without credentials, for logs."""
    return dsn.rpartition("@")[2] if "://" in dsn else dsn


class ClickHouseUnavailable(Exception):
    """ClickHouse (a server, or the sink process's front) did not answer."""


class ClickHouse:
    def __init__(self, client: Any, executor: ThreadPoolExecutor) -> None:
        self._client = client
        self._executor = executor

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str, *, wait: float = 0.0) -> AsyncIterator[ClickHouse]:
        """Connect; to a server that may still be starting, retry for ``wait`` seconds."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        loop = asyncio.get_running_loop()
        try:
            client = await _connected(loop, executor, dsn, wait)
            try:
                yield cls(client, executor)
            finally:
                await loop.run_in_executor(executor, client.close)
        finally:
            executor.shutdown(wait=True)

    @property
    def engine_path(self) -> str | None:
        """Where the embedded engine keeps its data, as it opened it; None for a server."""
        path = getattr(self._client, "path", None)  # clickhouse-connect's ChdbClient has one
        return path if isinstance(path, str) else None

    async def on_engine_thread(self, fn: Callable[[], T]) -> T:
        """Run blocking work on the one thread every call of this client uses."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self.on_engine_thread(lambda: fn(*args, **kwargs))

    async def apply_migrations(self) -> list[str]:
        applied = []
        for _, path in sql.migrations(sql.CLICKHOUSE_DIR):
            for statement in sql.statements(path.read_text()):
                await self._run(self._client.command, statement)
            applied.append(f"clickhouse: ensured {path.name}")
        return applied

    async def ping(self) -> None:
        """One round trip; raises while ClickHouse does not answer."""
        await self._run(self._client.command, "SELECT 1")

    async def insert_json(self, table: str, lines: bytes) -> None:
        """Insert JSONEachRow data: ClickHouse parses it, no Python per row."""
        await self._run(self._client.raw_insert, table, insert_block=lines, fmt="JSONEachRow")

    async def rows(self, query: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a named query from ``clickhouse/queries``."""
        try:
            result = await self._run(
                self._client.query, sql.clickhouse(query), parameters=parameters
            )
        except OperationalError as exc:  # the connection, not the query
            raise ClickHouseUnavailable(str(exc)) from exc
        return list(result.result_rows)
