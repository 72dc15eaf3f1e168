"""The embedded engine's HTTP front, through the HTTP client the API uses."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast
from urllib.parse import quote, urlsplit

import clickhouse_connect
import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.exceptions import DatabaseError

from bulkflow.clickhouse import ClickHouse
from bulkflow.clickhouse_front import USER, EngineFront, create_front
from bulkflow.settings import Settings
from ingest_api.errors import Unavailable
from ingest_api.reports import Reports
from ingest_api.routes import prefetched
from ops.bench.fleet import free_port
from schemas.bulk_action import LogFilters
from stream_agents.dead_letters import DeadLetterQueue
from stream_agents.sink import OutcomeSink
from tests.conftest import settings_env
from tests.stream_agents.test_sink import batch
from tests.support import run_cli

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


PASSWORD = "front password: any characters / @ %"


@asynccontextmanager
async def serving_front(clickhouse: ClickHouse) -> AsyncIterator[str]:
    """The front on a free port, as the sink's process serves it; its URL, credentials in it."""
    port = free_port()
    async with EngineFront.open(clickhouse) as front:
        config = uvicorn.Config(
            create_front(front, PASSWORD),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            yield f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
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
    done = run_cli("serve", "--role", "api", env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no embedded ClickHouse at http://127.0.0.1:")
    assert "bulkflow serve --role sink" in last
    assert "Traceback" not in done.stderr


def bare(url: str) -> str:
    """The front's URL without its credentials."""
    return f"http://{urlsplit(url).hostname}:{urlsplit(url).port}"


@pytest.mark.parametrize("password", [None, "wrong", PASSWORD[:-1]])
async def test_the_front_needs_its_password(front_url: str, password: str | None) -> None:
    client = httpx.AsyncClient(base_url=bare(front_url))
    auth = (USER, password) if password is not None else None
    async with client:
        response = await client.post("/", content=b"SELECT 1", auth=auth)
        assert response.status_code == 401
        assert response.headers["x-clickhouse-exception-code"] == "516"
        assert "password is incorrect" in response.text
        # As ClickHouse takes them: basic auth (the client's way), its headers, parameters.
        for credentials in (
            {"auth": (USER, PASSWORD)},
            {"headers": {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}},
            {"params": {"user": USER, "password": PASSWORD}},
        ):
            ok = await client.post("/", content=b"SELECT 1", **credentials)  # type: ignore[arg-type]
            assert (ok.status_code, ok.text) == (200, "1\n")
        other_user = await client.post("/", content=b"SELECT 1", auth=("default", PASSWORD))
        assert other_user.status_code == 401


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:18123", "10.0.0.5"])
async def test_the_front_answers_only_to_a_local_host_name(front_url: str, host: str) -> None:
    """A page rebinding its own name to 127.0.0.1 still sends its own name as Host."""
    async with httpx.AsyncClient(base_url=bare(front_url), auth=(USER, PASSWORD)) as client:
        refused = await client.post("/", content=b"SELECT 1", headers={"host": host})
        assert refused.status_code == 400
        local = await client.post("/", content=b"SELECT 1", headers={"host": "localhost"})
        assert local.status_code == 200


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT count() FROM numbers(10000000000)", "158"),  # TOO_MANY_ROWS, read 100M
        # Few rows read, much work: a cross join of a trillion rows, which no
        # machine finishes within the 5 s limit (9 billion took 4.7 s on one).
        ("SELECT count() FROM numbers(10000) a, numbers(10000) b, numbers(10000) c", "159"),
    ],
)
async def test_one_heavy_query_cannot_hold_the_engine(
    front_url: str, remote: ClickHouse, query: str, code: str
) -> None:
    """Stopped by the engine's limits: its thread is free again for the sink and /stats."""
    async with httpx.AsyncClient(base_url=bare(front_url), auth=(USER, PASSWORD)) as client:
        heavy = await client.post("/", content=query.encode(), timeout=120)
        assert heavy.headers["x-clickhouse-exception-code"] == code, heavy.text
        for change in ("SET max_execution_time = 0", "SELECT 1 SETTINGS max_rows_to_read = 0"):
            refused = await client.post("/", content=change.encode())
            assert refused.headers["x-clickhouse-exception-code"] == "164", refused.text  # READONLY
    action_id = str(uuid.uuid4())
    assert await remote.rows("action_stats", {"account_id": "acme", "action_id": action_id}) == []
