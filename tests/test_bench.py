"""A small run of the benchmark, so that ``bulkflow bench`` keeps working.

It runs the real command against the local services (its own database, topics
and processes) and checks what it reports; the bench itself fails when the
data it produced differs from what the generator knows. Nothing here is timed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from bulkflow.settings import Settings
from tests.support import eventually, run_cli

ROWS = 20_000
ACCOUNTS = 2


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    done = run_cli("bench", *args, "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    return report


async def bench_leftovers(settings: Settings) -> set[str]:
    """The benches' databases and topics on the services."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topics = {t for t in await admin.list_topics() if t.startswith("bench-")}
    finally:
        await admin.close()
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bulkflow_bench_%'"
        )
    finally:
        await conn.close()
    return topics | {row["datname"] for row in rows}


def test_a_small_bench_run_reports_verified_numbers(
    local_services: Settings, tmp_path: Path
) -> None:
    before = asyncio.run(bench_leftovers(local_services))
    report = bench(tmp_path, "--rows", str(ROWS), "--accounts", str(ACCOUNTS))

    async def released() -> bool:  # the broker deletes a topic's files after answering
        return await bench_leftovers(local_services) <= before

    # The run's database and topics are gone (others' runs may have left theirs).
    asyncio.run(eventually(released, "the bench's database and topics dropped"))

    assert report["rows"] == ROWS
    assert sum(report["expected"].values()) == ROWS
    assert report["pipeline"]["rows"] == ROWS
    assert set(report["ratios"]) == {"pipeline/ceiling", "pipeline/naive"}
    runs = report["ceiling_runs"]  # before and after the pipeline; the ratio uses the mean
    assert len(runs) == 2
    assert abs(report["ceiling_rows_per_second"] - sum(runs) / 2) <= 1  # the mean of the two
    assert all(value > 0 for value in report["ratios"].values())
    assert report["latency"]["actions"] == 20
    assert report["latency"]["p50_seconds"] > 0
    memory = report["pipeline"]["peak_memory_mb"]
    assert sorted(name.split("#")[0] for name in memory) == ["agents", "api", "sink"]
    assert all(m["rss_mb"] > 0 for m in memory.values())
    cpu = report["pipeline"]["cpu"]
    # /proc/stat counts 10 ms ticks per core: a second's run may read a little over.
    assert 0 < cpu["busy_cores"] <= cpu["cores"] * 1.1
    per_row = cpu["us_per_row"]
    services = ("postgres", "kafka", "redis")  # the session's local services run here
    assert set(per_row) == {*memory, *services, "rest of the machine", "all"}
    processes = [per_row[name] for name in memory]
    assert all(us > 0 for us in processes)  # every process did work for the rows
    assert all(per_row[name] >= 0 for name in [*services, "rest of the machine"])
    assert per_row["postgres"] > 0  # every row was written there
    assert per_row["all"] >= sum(processes) * 0.95  # the machine saw at least their work
    components = cpu["components"]
    assert list(components) == [
        "api",
        "agents",
        "sink",
        "bulkflow",
        *services,
        "rest of the machine",
        "all",
    ]
    assert all(us >= 0 for us in components.values())
    # Rounded to 0.1 us per part: the sum may differ by a tenth per part.
    parts = [components[role] for role in ("api", "agents", "sink")]
    assert abs(components["bulkflow"] - sum(parts)) <= 0.2
    assert abs(components["bulkflow"] - sum(processes)) <= 0.2


def test_two_replicas_survive_one_killed_and_one_started_mid_action(
    local_services: Settings, tmp_path: Path
) -> None:
    """The bench verifies every count, outcome and stored row; here: that the chaos happened."""
    report = bench(tmp_path, "--rows", "60000", "--accounts", "3", "--agents", "2", "--kill-agent")

    pipeline = report["pipeline"]
    assert (pipeline["replicas_killed"], pipeline["replicas_started"]) == (1, 1)
    assert 0 < pipeline["killed_at_fraction"] < 1
    assert len(pipeline["peak_memory_mb"]) == 5  # api, sink, two replicas, the new one
    per_row = pipeline["cpu"]["us_per_row"]
    replicas = [per_row[name] for name in pipeline["peak_memory_mb"] if name.startswith("agents")]
    # The killed replica's CPU as last seen, the new one's since its start: all counted.
    assert abs(pipeline["cpu"]["components"]["agents"] - sum(replicas)) <= 0.3


def test_impossible_sizes_are_refused_before_anything_runs() -> None:
    for args, message in (
        (["--rows", "0"], "must be at least 1"),
        (["--rows", "2", "--accounts", "3"], "--rows must be at least --accounts"),
    ):
        done = run_cli("bench", *args)
        assert done.returncode != 0
        assert message in done.stderr
