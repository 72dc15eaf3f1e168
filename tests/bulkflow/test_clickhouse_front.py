"""The embedded engine's HTTP front, through the HTTP client the API uses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import clickhouse_connect
import pytest
import uvicorn
from clickhouse_connect.driver.exceptions import DatabaseError

from bulkflow.clickhouse import ClickHouse
from bulkflow.clickhouse_front import EngineFront, create_front
from bulkflow.dead_letters import DeadLetterQueue
from bulkflow.fleet import free_port
from bulkflow.settings import Settings
from ingest_api.errors import Unavailable
from ingest_api.reports import Reports
from ingest_api.routes import prefetched
from schemas.bulk_action import LogFilters
from stream_agents.sink import OutcomeSink
from tests.conftest import settings_env
from tests.stream_agents.test_sink import batch

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serving_front(clickhouse: ClickHouse) -> AsyncIterator[str]:
    """The front on a free port, as the sink's process serves it; its URL."""
    port = free_port()
    async with EngineFront.open(clickhouse) as front:
        config = uvicorn.Config(
            create_front(front), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving


@pytest.fixture(scope="module")
async def front_url(clickhouse: ClickHouse) -> AsyncIterator[str]:
    async with serving_front(clickhouse) as url:
        yield url


@pytest.fixture(scope="module")
async def remote(front_url: str) -> AsyncIterator[ClickHouse]:
    """The API's client of the front, when it runs apart from the sink."""
    # Opened as the server starts, like the API beside a starting sink: it waits.
    async with ClickHouse.open(front_url, wait=30) as client:
        yield client


def raw_client(url: str) -> Any:
    return clickhouse_connect.get_client(dsn=url)


async def test_reads_through_the_front_equal_the_engine_s(
    clickhouse: ClickHouse, remote: ClickHouse
) -> None:
    action_id = str(uuid.uuid4())
    assert (
        await OutcomeSink(clickhouse, cast(DeadLetterQueue, None), "outcomes").write(
            [batch(action_id, chunk_no=0).to_bytes()]
        )
        == 1
    )
    page = {"account_id": "acme", "action_id": action_id, "after": 0, "limit": 10}
    queries = {
        "action_stats": {"account_id": "acme", "action_id": action_id},
        "action_logs": {**page, "row_to": 100, "outcome": "", "reason": ""},
        "action_problem_rows": {**page, "outcomes": ["failed", "skipped"]},
    }
    for query, parameters in queries.items():
        direct = await clickhouse.rows(query, parameters)
        assert direct, query
        assert await remote.rows(query, parameters) == direct, query


async def test_the_front_refuses_writes(front_url: str) -> None:
    client = await asyncio.to_thread(raw_client, front_url)
    create = "CREATE TABLE bulkflow.nope (a Int8) ENGINE = Memory"
    with pytest.raises(DatabaseError, match="code: 164"):  # READONLY
        await asyncio.to_thread(client.command, create)


async def test_engine_errors_come_back_with_their_code(front_url: str) -> None:
    client = await asyncio.to_thread(raw_client, front_url)
    with pytest.raises(DatabaseError, match="code: 60"):  # UNKNOWN_TABLE
        await asyncio.to_thread(client.query, "SELECT * FROM bulkflow.nope")


async def test_only_the_default_database_is_served(front_url: str) -> None:
    with pytest.raises(DatabaseError, match="code: 81"):  # UNKNOWN_DATABASE
        await asyncio.to_thread(raw_client, f"{front_url}/bulkflow")


async def test_reports_answer_unavailable_while_the_front_is_down(
    clickhouse: ClickHouse,
) -> None:
    async with AsyncExitStack() as stack:
        front = AsyncExitStack()
        url = await front.enter_async_context(serving_front(clickhouse))
        reports = Reports(await stack.enter_async_context(ClickHouse.open(url, wait=30)))
        action_id = uuid.uuid4()
        assert (await reports.stats("acme", action_id)).recorded_rows == 0
        await front.aclose()  # the sink's process went away
        with pytest.raises(Unavailable):  # a 503 to retry, not a 500
            await reports.stats("acme", action_id)
        # Streamed answers too: their first page is fetched before the response starts.
        with pytest.raises(Unavailable):
            await prefetched(reports.all_logs("acme", action_id, LogFilters()))
        with pytest.raises(Unavailable):
            await prefetched(reports.problem_rows_csv("acme", action_id, ["email"], ["failed"]))


async def test_long_bind_parameters_go_as_a_form(front_url: str) -> None:
    """clickhouse-connect sends them as multipart form fields rather than in the URL."""
    client = await asyncio.to_thread(raw_client, front_url)
    value = "x" * 100_000
    result = await asyncio.to_thread(
        client.query, "SELECT length({value:String})", parameters={"value": value}
    )
    assert result.result_rows == [(len(value),)]


def test_an_api_without_the_sink_names_the_missing_role(database: Settings) -> None:
    """Started apart with nothing serving the front, the API says what to start, and exits 1."""
    env = {
        **os.environ,
        **settings_env(database),
        "BULKFLOW_EMBEDDED_CLICKHOUSE_PORT": str(free_port()),  # nobody listens there
        "BULKFLOW_EMBEDDED_CLICKHOUSE_WAIT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bulkflow.cli", "serve", "--role", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no embedded ClickHouse at http://127.0.0.1:")
    assert "bulkflow serve --role sink" in last
    assert "Traceback" not in done.stderr
