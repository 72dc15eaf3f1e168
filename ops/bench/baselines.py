"""What Postgres alone absorbs: the benchmark's two baselines, on the pipeline's table.

- **ceiling**: one connection, COPY into a staging table, then one set-based
  INSERT ... ON CONFLICT: the physical limit of the upsert itself;
- **naive**: per-row INSERT ... ON CONFLICT via executemany, 1,000 rows per
  transaction: what a straightforward importer does.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import asyncpg

from bulkflow import sql
from bulkflow.settings import Settings

NAIVE_ROWS_PER_TRANSACTION = 1_000
_COLUMNS = ["account_id", "email", "first_name", "last_name", "company"]

Record = tuple[str, str, str, str, str]


def _records(paths: list[Path], account: str) -> list[Record]:
    records = []
    for path in paths:
        with path.open(newline="") as source:
            reader = csv.reader(source)
            next(reader)
            records += [(account, r[0], r[1], r[2], r[3]) for r in reader]
    return records


async def ceiling(settings: Settings, paths: list[Path]) -> float:
    """Rows per second of COPY + one INSERT ... ON CONFLICT."""
    records = _records(paths, "ceiling")
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(sql.postgres("bench_ceiling_staging"))
            await conn.copy_records_to_table("bench_staging", records=records, columns=_COLUMNS)
            await conn.execute(sql.postgres("bench_ceiling_upsert"))
        return len(records) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def naive(settings: Settings, paths: list[Path]) -> float:
    """Rows per second of executemany, NAIVE_ROWS_PER_TRANSACTION rows per transaction."""
    records = _records(paths, "naive")
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        started = time.perf_counter()
        statement = sql.postgres("bench_naive_upsert")
        for start in range(0, len(records), NAIVE_ROWS_PER_TRANSACTION):
            async with conn.transaction():
                await conn.executemany(
                    statement, records[start : start + NAIVE_ROWS_PER_TRANSACTION]
                )
        return len(records) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def reset(settings: Settings) -> None:
    """Empty the tables a baseline or the pipeline wrote, for the next measurement."""
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await conn.execute(sql.postgres("bench_reset"))
    finally:
        await conn.close()
