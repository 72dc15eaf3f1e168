"""Fixtures that start real things: local services, a test database, a server.

Tests share the developer's local Kafka, Postgres and Redis (started here if
they are not running) but never their data: each run gets its own database,
topic prefix, embedded ClickHouse path and API port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bulkflow.clickhouse import ClickHouse
from bulkflow.database import connect_pool
from bulkflow.migrations import migrate_postgres
from bulkflow.rate_limit import TokenBucket
from bulkflow.settings import Settings
from bulkflow.topics import delete_topics, ensure_topics
from ops.bench.fleet import free_port
from ops.dev.local_services import Supervisor
from tests.support import Tenant, new_tenant

RUN_ID = uuid.uuid4().hex[:8]
SERVER_START_TIMEOUT = 120.0  # seconds
ADMIN_TOKEN = "test-admin-token-of-at-least-32-characters"
#: The test server's default row allowance: high, so that only the tests that
#: set a limit on their account are throttled.
TEST_ROWS_PER_MINUTE = 10_000_000
#: Write requests per account in tests: each test uses fresh accounts and
#: sends fewer writes than the burst, except the test of the limit itself.
TEST_WRITES_PER_MINUTE = 60
TEST_WRITE_BURST = 12
#: Seconds before the server cancels a statement: short, for the timeout fault test.
TEST_COMMAND_TIMEOUT = 5
#: Every test's requests come from 127.0.0.1: its per-address allowances are
#: out of reach, except on the servers of the tests of those limits.
TEST_ADDRESS_REQUESTS_PER_MINUTE = 1_000_000
TEST_ADDRESS_BURST = 100_000
TEST_AUTH_FAILURE_BURST = 10_000
TEST_WEBHOOK_FIRST_RETRY = 0.2  # seconds before a failed webhook's second attempt


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read these settings, with the test limits."""
    return settings.model_copy(
        update={
            "admin_token": SecretStr(ADMIN_TOKEN),
            "api_writes_per_minute": TEST_WRITES_PER_MINUTE,
            "api_write_burst": TEST_WRITE_BURST,
            "postgres_command_timeout": TEST_COMMAND_TIMEOUT,
            "api_address_requests_per_minute": TEST_ADDRESS_REQUESTS_PER_MINUTE,
            "api_address_burst": TEST_ADDRESS_BURST,
            "api_auth_failures_per_minute": TEST_ADDRESS_REQUESTS_PER_MINUTE,
            "api_auth_failure_burst": TEST_AUTH_FAILURE_BURST,
            # The webhook tests' receivers listen on 127.0.0.1; their retries are quick.
            "webhook_allow_private": True,
            "webhook_first_retry": TEST_WEBHOOK_FIRST_RETRY,
        }
    ).as_env()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClickHouse]:
    """A migrated embedded engine of the module's own, closed after it.

    chdb opens one path per process at a time: modules take turns.
    """
    async with ClickHouse.open(f"chdb://{tmp_path_factory.mktemp('clickhouse')}") as client:
        await client.apply_migrations()
        yield client


@pytest.fixture
async def limiter(local_services: Settings) -> AsyncIterator[TokenBucket]:
    """Token buckets in the local Redis, under a prefix of the test's own."""
    redis = Redis.from_url(local_services.redis_url.get_secret_value())
    try:
        yield TokenBucket(redis, prefix=f"test:{uuid.uuid4().hex}:")
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
def local_services() -> Settings:
    """The developer's local services, started if they are not running."""
    settings = Settings()
    statuses = Supervisor(settings).up()
    assert all(s.ready for s in statuses), statuses
    return settings


@pytest.fixture(scope="session")
def settings(local_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    dsn = urlsplit(local_services.postgres_dsn.get_secret_value())
    test_dsn = urlunsplit(dsn._replace(path=f"/bulkflow_test_{RUN_ID}"))
    return Settings(
        postgres_dsn=SecretStr(test_dsn),
        topic_prefix=f"test-{RUN_ID}.",
        topic_partitions=6,
        clickhouse_url=SecretStr(f"chdb://{tmp_path_factory.mktemp('clickhouse')}"),
        api_port=free_port(),
        embedded_clickhouse_port=free_port(),
        # Set, so that the run's servers write no secret into the state directory.
        embedded_clickhouse_password=SecretStr(f"front-{uuid.uuid4().hex}"),
        rows_per_minute=TEST_ROWS_PER_MINUTE,
    )


@pytest.fixture(scope="session")
def database(local_services: Settings, settings: Settings) -> Iterator[Settings]:
    """A fresh, migrated database and the run's topics; dropped afterwards."""
    name = urlsplit(settings.postgres_dsn.get_secret_value()).path.lstrip("/")
    admin_dsn = local_services.postgres_dsn.get_secret_value()

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate_postgres(settings))
    asyncio.run(ensure_topics(settings))
    yield settings
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(delete_topics(settings))


@pytest.fixture
async def isolated(database: Settings) -> AsyncIterator[Settings]:
    """A database and topic prefix of the test's own: no background task of the session
    server (scheduler, backlog drainer) sees what the test stores there."""
    name = f"bulkflow_iso_{uuid.uuid4().hex[:8]}"
    dsn = urlsplit(database.postgres_dsn.get_secret_value())
    settings = database.model_copy(
        update={
            "postgres_dsn": SecretStr(urlunsplit(dsn._replace(path=f"/{name}"))),
            "topic_prefix": f"{database.topic_prefix}iso-{uuid.uuid4().hex[:6]}.",
        }
    )
    admin = await asyncpg.connect(database.postgres_dsn.get_secret_value())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate_postgres(settings)
        await ensure_topics(settings)
        yield settings
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pool(database: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with connect_pool(database, size=2) as pool:
        yield pool


@pytest.fixture(scope="session")
def server(database: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``bulkflow serve`` (all roles) as a child process; its base URL."""
    log_path = tmp_path_factory.mktemp("server") / "bulkflow.log"
    env = {**os.environ, **settings_env(database)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _await_health(database.api_url, process, log_path)
        yield database.api_url
    finally:
        process.terminate()
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    # SIGTERM is how deployments stop it: it closes its clients in order and exits 0.
    assert code == 0, f"SIGTERM ended bulkflow serve with {code}:\n{log_path.read_text()[-4000:]}"


def _await_health(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bulkflow serve exited:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"bulkflow serve did not answer:\n{log_path.read_text()[-4000:]}")


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await new_tenant(pool)


@pytest.fixture
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by selenium through Debian's chromedriver.

    Pages are tested as people see them; ``.ci/run`` installs both packages.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("needs Debian's chromium: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",  # as root, in a container
        "--disable-gpu",
        # Without these, chromium calls out at start and this network refuses it.
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,1100",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()
