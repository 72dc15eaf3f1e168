"""Who is calling: the account an API key acts for.

Every endpoint takes ``Authorization: Bearer <key>``; the account never comes
from the request body. A missing, malformed, unknown or revoked key is 401.
"""

from __future__ import annotations

import asyncpg
from starlette.requests import Request

from ingest_api.accounts import account_for_key
from ingest_api.errors import Unauthorized


class Authenticator:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def account(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        account = await account_for_key(self._pool, key.strip())
        if account is None:
            raise Unauthorized("the API key is not valid")
        return account
