"""The apply statements (every entity's and every action's) stay index probes
under generic plans.

asyncpg prepares statements, and after five executions Postgres may switch to
a generic plan, where match_on ($2) is unknown: a join condition or filter
that depends on it must not turn a batch into a scan of the whole table (it
once made 10,000-row batches take 18 s instead of 0.4 s). Checked on the plan
itself, not on timings.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkflow import sql
from schemas.action import ACTIONS
from schemas.entity import ENTITIES, ModelEntity

pytestmark = pytest.mark.anyio


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def statements() -> list[tuple[str, str, frozenset[str]]]:
    """Every entity's and action's statement: (file, the entity's table, the tables it reads)."""
    found = []
    for entity in ENTITIES.values():
        assert isinstance(entity, ModelEntity)
        tables = frozenset({entity.table, *(r.entity.table for r in entity.references.values())})
        queries = {entity.apply_query, entity.insert_query, entity.plain_insert_query}
        queries |= {a.apply_query(entity) for a in ACTIONS.values() if entity.name in a.entities}
        found += [(query, entity.table, tables) for query in sorted(queries)]
    return found


@pytest.mark.parametrize(("query", "table", "tables"), statements())
async def test_generic_plan_probes_indexes(
    pool: asyncpg.Pool, query: str, table: str, tables: frozenset[str]
) -> None:
    text = sql.postgres(query)
    arguments = "NULL, NULL" if "$2" in text else "NULL"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE apply_plan AS {text}")
        try:
            [row] = await conn.fetch(f"EXPLAIN (FORMAT JSON) EXECUTE apply_plan({arguments})")
        finally:
            await conn.execute("DEALLOCATE apply_plan")
    plan = row[0][0]["Plan"]  # the pool decodes json with orjson
    scans = [n for n in nodes(plan) if n.get("Relation Name") in tables]
    assert table in {n["Relation Name"] for n in scans}, "the plan never reads the table"
    assert all(n["Node Type"] != "Seq Scan" for n in scans), [
        (n["Relation Name"], n["Node Type"]) for n in scans
    ]
    assert not [n for n in nodes(plan) if "Join Filter" in n], "a join filter evaluated row by row"
