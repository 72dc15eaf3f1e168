"""Who is calling: the account every request acts for.

Interim scheme until API keys: the ``X-Account-Id`` header names the account.
The account never comes from the request body.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from ingest_api.errors import Unauthorized

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def account_of(request: Request) -> str:
    account = request.headers.get("x-account-id", "")
    if not _ACCOUNT_ID.match(account):
        raise Unauthorized(
            "an X-Account-Id header (1-64 letters, digits, '.', '_', '-') is required"
        )
    return account
