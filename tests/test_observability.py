"""Metrics, logs and SQL for analysts, against the real processes.

Each role runs as its own ``bulkflow serve`` process (api, sink, agents) on a
database, topic prefix and embedded ClickHouse of the test's own; the test
scrapes every process's ``/metrics`` while an action runs and after, reads
the outcomes through ``bulkflow sql`` (the sink process's front), and greps
every process's log for a row value it sent through a failing path.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from bulkflow.settings import Settings
from ops.bench.fleet import Fleet, free_port
from tests.conftest import settings_env
from tests.support import (
    PATIENCE,
    Tenant,
    new_tenant,
    run_cli,
    wait_for_stats,
    wait_for_status,
)

pytestmark = pytest.mark.anyio

ROWS = 3_000
MARKER = f"marker-{uuid.uuid4().hex}"  # a row value that must never reach a log
_SAMPLE = re.compile(r"^(\w+)(\{.*\})? (\S+)$")


def scrape(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, from Prometheus' text format."""
    values = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            values[match[1] + (match[2] or "")] = float(match[3])
    return values


def total(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        v
        for key, v in values.items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


def contacts_csv(rows: int) -> bytes:
    """``rows`` contacts: every 10th has an invalid email carrying the marker."""
    lines = ["email,first_name,lead_score"]
    for i in range(1, rows + 1):
        email = f"{MARKER}-{i}-not-an-email" if i % 10 == 0 else f"c{i}@example.com"
        lines.append(f"{email},{MARKER},{i % 100}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
async def fleet(isolated: Settings, tmp_path: Path) -> AsyncIterator[tuple[Fleet, dict[str, str]]]:
    """api, sink and agents processes, JSON logs, each serving its metrics."""
    settings = isolated.model_copy(
        update={
            "clickhouse_url": SecretStr(f"chdb://{tmp_path / 'clickhouse'}"),
            "api_port": free_port(),
            "embedded_clickhouse_port": free_port(),
        }
    )
    ports = {"sink": free_port(), "agents": free_port()}
    fleet = Fleet(settings.model_copy(update={}), tmp_path)
    fleet.settings = settings
    env = {k: v for k, v in settings_env(settings).items()} | {"BULKFLOW_LOG_FORMAT": "json"}
    fleet.settings_env = env  # type: ignore[attr-defined]
    try:
        fleet.spawn("api", ["api"], env)
        for role in ("sink", "agents"):
            fleet.spawn(role, [role], {**env, "BULKFLOW_METRICS_PORT": str(ports[role])})
        await fleet.until_ready()
        urls = {
            "api": f"{settings.api_url}/metrics",
            "sink": f"http://127.0.0.1:{ports['sink']}/metrics",
            "agents": f"http://127.0.0.1:{ports['agents']}/metrics",
        }
        yield fleet, urls
    finally:
        await asyncio.to_thread(fleet._stop_all)


async def scrape_all(
    client: httpx.AsyncClient, urls: dict[str, str]
) -> dict[str, dict[str, float]]:
    return {role: scrape((await client.get(url)).text) for role, url in urls.items()}


async def test_every_role_counts_an_action_and_logs_no_row_values(
    fleet: tuple[Fleet, dict[str, str]], isolated: Settings
) -> None:
    members, urls = fleet
    settings = members.settings
    pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(), min_size=1, max_size=1
    )
    try:
        tenant: Tenant = await new_tenant(pool)
    finally:
        await pool.close()
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60) as api:
        before = await scrape_all(api, urls)
        body = contacts_csv(ROWS)
        response = await api.post(
            "/v1/bulk-actions?entity=contact&action=upsert",
            content=body,
            headers={**tenant.headers, "content-type": "text/csv", "x-request-id": "obs-test-1"},
        )
        assert response.status_code == 202, response.text
        assert response.headers["x-request-id"] == "obs-test-1"
        action_id = response.json()["id"]
        # During the action: the agents' row counter moves before the end.
        deadline = time.monotonic() + PATIENCE
        while True:
            during = await scrape_all(api, urls)
            if total(during["agents"], "bulkflow_rows_total") > total(
                before["agents"], "bulkflow_rows_total"
            ):
                break
            assert time.monotonic() < deadline, "the agents never counted a row"
            await asyncio.sleep(0.2)
        done = await wait_for_status(api, action_id, tenant, "completed")
        await wait_for_stats(api, action_id, tenant, ROWS)
        # A 404 and the request id of a request that sent none.
        missing = await api.get(f"/v1/bulk-actions/{uuid.uuid4()}", headers=tenant.headers)
        assert missing.status_code == 404
        assert re.fullmatch(r"[0-9a-f]{32}", missing.headers["x-request-id"])
        after = await scrape_all(api, urls)

    invalid = ROWS // 10
    assert done["counts"] == {"succeeded": ROWS - invalid, "failed": invalid, "skipped": 0}

    def moved(role: str, name: str, **labels: str) -> float:
        return total(after[role], name, **labels) - total(before[role], name, **labels)

    # agents: rows by outcome and reason, batches, lag sampled for their partitions
    assert moved("agents", "bulkflow_rows_total", outcome="succeeded") == ROWS - invalid
    assert (
        moved("agents", "bulkflow_rows_total", outcome="failed", reason="invalid_email") == invalid
    )
    assert moved("agents", "bulkflow_batch_apply_seconds_count") >= 1
    assert moved("agents", "bulkflow_batch_rows_sum") == ROWS
    # lag: sampled every few seconds; once the action's chunks are committed it is 0
    chunks_topic = f"{settings.topic_prefix}bulkflow.chunks"
    deadline = time.monotonic() + PATIENCE
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            agents = scrape((await client.get(urls["agents"])).text)
            lags = [v for k, v in agents.items() if f'topic="{chunks_topic}"' in k]
            if lags and sum(lags) == 0:
                break
            assert time.monotonic() < deadline, f"consumer lag never settled at 0: {lags}"
            await asyncio.sleep(0.5)
    # sink: every outcome message written (a chunk of 500 rows gives at least one)
    assert moved("sink", "bulkflow_sink_messages_total") >= ROWS // 500
    assert moved("sink", "bulkflow_sink_insert_seconds_count") >= 1
    # api: the upload, its bytes, and the requests by route and status
    assert moved("api", "bulkflow_upload_bytes_total", kind="csv") == len(body)
    assert moved("api", "bulkflow_actions_submitted_total", entity="contact") == 1
    assert moved("api", "bulkflow_http_requests_total", route="/v1/bulk-actions", status="202") == 1
    assert (
        moved(
            "api",
            "bulkflow_http_requests_total",
            route="/v1/bulk-actions/{action_id}",
            status="404",
        )
        >= 1
    )

    # Logs: JSON lines with the role; the request id and the action named;
    # the marker (in every row, and in the failing rows' values) nowhere.
    members.check_alive()
    lines = []
    for member in members.members:
        for line in member.log.read_text().splitlines():
            assert MARKER not in line, f"{member.name} logged a row value: {line}"
            if line.startswith("{"):
                lines.append(json.loads(line))
    assert lines, "no JSON log lines"
    assert {"time", "level", "role", "logger", "message"} <= set(lines[0])
    assert {entry["role"] for entry in lines} >= {"api", "sink", "agents"}


async def test_bulkflow_sql_reads_the_front_of_the_all_in_one_process(
    api: httpx.AsyncClient, tenant: Tenant, database: Settings
) -> None:
    rows = [{"email": f"sql{i}@example.com"} for i in range(40)] + [{"email": "bad"}] * 2
    response = await api.post(
        "/v1/bulk-actions",
        json={"entity": "contact", "action": "create", "rows": rows},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    action_id = response.json()["id"]
    await wait_for_status(api, action_id, tenant, "completed")
    await wait_for_stats(api, action_id, tenant, len(rows))

    def sql(query: str, *flags: str) -> str:
        done = run_cli(
            "sql", query, *flags, env={**settings_env(database), "PATH": "/usr/bin:/bin"}
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = f"WHERE account_id = '{tenant.id}'"
    durations = json.loads(
        sql(
            f"SELECT rows, succeeded, failed, skipped FROM bulkflow.action_durations {where}",
            "--format",
            "json",
        )
    )
    assert durations == [{"rows": 42, "succeeded": 40, "failed": 2, "skipped": 0}]
    table = sql(
        f"SELECT outcome, sum(rows) AS rows FROM bulkflow.outcomes_by_account_hour {where} "
        "GROUP BY outcome ORDER BY outcome"
    )
    assert re.search(r"succeeded\s+40", table), table
    assert re.search(r"failed\s+2", table), table
    assert table.rstrip().endswith("(2 rows)")
    csv_out = sql(
        f"SELECT reason, rows FROM bulkflow.failure_reasons_by_hour {where}", "--format", "csv"
    )
    assert csv_out.splitlines() == ["reason,rows", "invalid_email,2"]
    # read-only: the front refuses writes
    refused = await asyncio.to_thread(
        run_cli,
        "sql",
        "DROP TABLE bulkflow.row_outcomes",
        env={**settings_env(database), "PATH": "/usr/bin:/bin"},
    )
    assert refused.returncode == 1, refused.stderr
    assert "readonly" in refused.stderr.lower(), refused.stderr
