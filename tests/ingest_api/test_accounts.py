"""`bulkflow accounts`: keys shown once and stored hashed; per-account row limits."""

from __future__ import annotations

import os
import subprocess

import asyncpg
import pytest

from bulkflow.settings import Settings
from ingest_api.accounts import account_for_key, hash_key
from tests.conftest import settings_env
from tests.support import run_cli

pytestmark = pytest.mark.anyio


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("accounts", *args, env={**os.environ, **settings_env(settings)})


async def test_create_limit_and_list(database: Settings, pool: asyncpg.Pool) -> None:
    created = cli(database, "create", "Initech")
    assert created.returncode == 0, created.stderr
    account_id = created.stdout.split()[1]
    key = created.stdout.strip().rsplit(" ", 1)[-1]
    assert key.startswith("bf_")
    assert await account_for_key(pool, key) == account_id
    assert await account_for_key(pool, key[:-1] + "x") is None
    stored = await pool.fetchrow(
        "SELECT key_hash, prefix FROM api_keys WHERE account_id = $1", account_id
    )
    assert stored["key_hash"] == hash_key(key)
    assert key not in str(dict(stored)).replace(stored["prefix"], "")

    assert cli(database, "limit", account_id, "600").returncode == 0
    assert (
        await pool.fetchval("SELECT rows_per_minute FROM accounts WHERE id = $1", account_id) == 600
    )
    assert f"{account_id}  Initech  keys=1  rows/min=600" in cli(database, "list").stdout
    assert cli(database, "limit", account_id, "0").returncode == 2
    assert cli(database, "limit", "acc_nobody", "5").returncode == 1
    assert cli(database, "limit", account_id, "default").returncode == 0
    assert (
        await pool.fetchval("SELECT rows_per_minute FROM accounts WHERE id = $1", account_id)
        is None
    )
