"""bulkflow as a user installs it: the wheel, in a fresh virtualenv, outside the checkout.

The SQL, the ClickHouse DDL and the templates must come with the wheel as
package data: the installed ``bulkflow`` migrates an empty database and
applies a small action against the real services, from a folder that holds
no checkout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from bulkflow.settings import Settings
from ops.bench.fleet import free_port
from tests.conftest import delete_topics, settings_env

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 900  # seconds: dependencies come from pip's cache, or from PyPI


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bulkflow`` script of a fresh virtualenv with the wheel installed (not editable)."""
    work = tmp_path_factory.mktemp("package")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)])
    [wheel] = work.glob("bulkflow-*.whl")
    run([sys.executable, "-m", "venv", str(work / "venv")])
    run([str(work / "venv/bin/pip"), "install", "-q", str(wheel)])
    return work / "venv/bin/bulkflow"


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


@pytest.fixture
def empty(local_services: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a database nothing has migrated, its own topics and ClickHouse."""
    name = f"bulkflow_pkg_{uuid.uuid4().hex[:8]}"
    admin_dsn = local_services.postgres_dsn.get_secret_value()
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    settings = local_services.model_copy(
        update={
            "postgres_dsn": SecretStr(dsn),
            "topic_prefix": f"pkg-{uuid.uuid4().hex[:8]}.",
            "topic_partitions": 2,
            "clickhouse_url": SecretStr(f"chdb://{tmp_path / 'clickhouse'}"),
            "state_dir": tmp_path / "state",
            "api_port": free_port(),
            "embedded_clickhouse_port": free_port(),
        }
    )
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    yield settings
    asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(delete_topics(settings))


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def test_the_installed_wheel_migrates_and_applies_an_action(
    installed: Path, empty: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"  # no checkout here, nor on the path
    outside.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    env |= settings_env(empty)
    options = {"cwd": outside, "env": env}

    migrated = run([str(installed), "migrate"], **options)
    assert "postgres: 007_reliability.sql" in migrated.stdout
    assert "clickhouse: ensured 001_row_outcomes.sql" in migrated.stdout
    created = run([str(installed), "accounts", "create", "Packaged"], **options)
    key = created.stdout.strip().rsplit(" ", 1)[-1]

    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [str(installed), "serve"], stdout=log, stderr=subprocess.STDOUT, **options
        )  # type: ignore[call-overload]
    try:
        done = _apply(empty.api_url, key, server)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert done["status"] == "completed", done
    assert done["counts"] == {"succeeded": 2, "failed": 1, "skipped": 0}


def _apply(url: str, key: str, server: subprocess.Popen[bytes]) -> dict[str, object]:
    headers = {"authorization": f"Bearer {key}"}
    rows = [{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "nope"}]
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            assert server.poll() is None, "the installed bulkflow serve exited"
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the installed bulkflow serve never answered"
            time.sleep(0.3)
        body = {"entity": "contact", "action": "upsert", "rows": rows}
        created = client.post("/v1/bulk-actions", json=body, headers=headers)
        assert created.status_code == 202, created.text
        action_id = created.json()["id"]
        while True:
            state: dict[str, object] = client.get(
                f"/v1/bulk-actions/{action_id}", headers=headers
            ).json()
            if state["status"] in ("completed", "failed"):
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
