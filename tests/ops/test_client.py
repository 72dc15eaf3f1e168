"""``bulkflow submit`` and ``bulkflow actions``, run as commands against the session server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio.to_thread
import asyncpg
import pytest

from tests.support import Tenant, new_tenant, run_cli

pytestmark = pytest.mark.anyio


def _bulkflow(server: str, tenant: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BULKFLOW_API_URL": server,
        "BULKFLOW_API_KEY": tenant.key,
        "COLUMNS": "200",
    }
    return run_cli(*args, env=env, timeout=300)


async def run(server: str, tenant: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: _bulkflow(server, tenant, *args))


async def test_submit_watch_and_the_actions_commands(
    server: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant = await new_tenant(pool)
    path = tmp_path / "people.csv"
    rows = [f"p{i}@example.com,Person {i}" for i in range(50)]
    path.write_text("E-mail,First Name\n" + "\n".join([*rows, "not-an-email,Nobody"]) + "\n")
    mapping = '{"E-mail": "email"}'
    args = ("submit", str(path), "--entity", "contact", "--action", "upsert")

    watched = await run(server, tenant, *args, "--mapping", mapping, "--watch")
    out = watched.stdout
    assert watched.returncode == 1, out + watched.stderr  # one failed row
    assert "completed" in out
    assert "failed 1" in out
    assert "succeeded 50" in out
    action_id = out.split("bulk action ", 1)[1].split(":", 1)[0]

    allowed = await run(server, tenant, *args, "--mapping", mapping, "--watch", "--allow-failed")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr

    listed = await run(server, tenant, "actions", "list")
    assert listed.returncode == 0, listed.stderr
    assert action_id in listed.stdout

    shown = await run(server, tenant, "actions", "show", action_id)
    assert shown.returncode == 0
    assert "completed" in shown.stdout

    logs = await run(server, tenant, "actions", "logs", action_id, "--outcome", "failed")
    assert logs.returncode == 0
    assert '"reason": "invalid_email"' in logs.stdout

    failed = await run(server, tenant, "actions", "failed-rows", action_id)
    assert failed.returncode == 0
    assert failed.stdout.splitlines()[0] == "E-mail,First Name,row_no,error"
    assert "not-an-email" in failed.stdout

    cancel = await run(server, tenant, "actions", "cancel", action_id)
    assert cancel.returncode == 2
    assert "409 conflict" in cancel.stderr.replace("HTTP ", "").replace(":", "")


async def test_without_a_key_it_says_what_to_set(server: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BULKFLOW_API_KEY"}
    result = await anyio.to_thread.run_sync(
        lambda: run_cli("actions", "list", env={**env, "BULKFLOW_API_URL": server})
    )
    assert result.returncode != 0
    assert "BULKFLOW_API_KEY" in result.stderr
