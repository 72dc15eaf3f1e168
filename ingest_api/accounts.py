"""Accounts and API keys: created by ``bulkflow accounts``, checked on every request.

A key is ``bf_`` + 43 URL-safe characters (256 random bits). It is shown once,
at creation; the database keeps its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg

from bulkflow import sql
from ingest_api.callbacks import new_secret

KEY_PREFIX = "bf_"
_KEY = re.compile(r"^bf_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class NewAccount:
    id: str
    name: str
    api_key: str  # the only time the key exists in clear


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_account(pool: asyncpg.Pool, name: str) -> NewAccount:
    account_id = "acc_" + secrets.token_hex(8)
    key = new_key()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql.postgres("accounts_create"), account_id, name)
        await conn.execute(sql.postgres("api_keys_create"), hash_key(key), account_id, key[:8])
    return NewAccount(account_id, name, key)


async def account_for_key(pool: asyncpg.Pool, key: str) -> str | None:
    if not _KEY.match(key):
        return None
    account: str | None = await pool.fetchval(sql.postgres("api_keys_account"), hash_key(key))
    return account


async def list_accounts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(sql.postgres("accounts_list"))
    return rows


async def set_rows_per_minute(pool: asyncpg.Pool, account_id: str, rows: int | None) -> bool:
    """Override the account's row allowance (None: back to the default); False if unknown."""
    row = await pool.fetchrow(sql.postgres("accounts_set_limit"), account_id, rows)
    return row is not None


async def set_webhook_secret(pool: asyncpg.Pool, account_id: str) -> str | None:
    """A new webhook secret for the account (the old one stops signing); None if unknown.

    Returned once: it is stored in clear, since it must sign, but never shown again.
    """
    secret = new_secret()
    row = await pool.fetchrow(sql.postgres("accounts_set_webhook_secret"), account_id, secret)
    return None if row is None else secret


async def has_webhook_secret(pool: asyncpg.Pool, account_id: str) -> bool:
    return bool(await pool.fetchval(sql.postgres("accounts_has_webhook_secret"), account_id))
