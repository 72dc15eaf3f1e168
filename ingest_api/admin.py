"""Operator endpoints, behind the admin token (``BULKFLOW_ADMIN_TOKEN``)."""

from __future__ import annotations

import hmac

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest_api.accounts import set_rows_per_minute, set_webhook_secret
from ingest_api.errors import Forbidden, InvalidJson, JsonResponse, NotFound, Unauthorized
from ingest_api.validation import parse


class Limits(BaseModel):
    """``PUT /v1/admin/accounts/{id}/limits``: null returns to the default."""

    model_config = ConfigDict(extra="forbid")

    rows_per_minute: int | None = Field(ge=1)


class Admin:
    def __init__(self, pool: asyncpg.Pool, token: str | None) -> None:
        self._pool = pool
        # Compared as bytes: compare_digest refuses non-ASCII str, and a header
        # may carry any byte.
        self._token = token.encode() if token is not None else None

    def check(self, request: Request) -> None:
        if self._token is None:
            raise Forbidden("the admin API is disabled (set BULKFLOW_ADMIN_TOKEN)")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        offered = token.strip().encode("latin-1")  # the header's bytes, as Starlette decoded them
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self._token):
            raise Unauthorized("an admin token is required")

    async def set_limits(self, request: Request) -> Response:
        self.check(request)
        try:
            body = await request.json()
        except ValueError:
            raise InvalidJson("the body is not valid JSON") from None
        limits = parse(Limits, body, "the limits are invalid")
        account_id = request.path_params["account_id"]
        if not await set_rows_per_minute(self._pool, account_id, limits.rows_per_minute):
            raise NotFound("no such account")
        return JsonResponse({"account_id": account_id, **limits.model_dump()})

    async def rotate_webhook_secret(self, request: Request) -> Response:
        """A new webhook secret for the account, shown this once."""
        self.check(request)
        account_id = request.path_params["account_id"]
        secret = await set_webhook_secret(self._pool, account_id)
        if secret is None:
            raise NotFound("no such account")
        return JsonResponse({"account_id": account_id, "webhook_secret": secret})


def admin_routes(admin: Admin) -> list[Route]:
    return [
        Route("/v1/admin/accounts/{account_id}/limits", admin.set_limits, methods=["PUT"]),
        Route(
            "/v1/admin/accounts/{account_id}/webhook-secret",
            admin.rotate_webhook_secret,
            methods=["POST"],
        ),
    ]
