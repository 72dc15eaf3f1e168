"""Per-account request limits: token buckets for writes and (generous) reads.

Every authenticated response carries ``RateLimit-Limit`` (requests per
minute), ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the
bucket is full again); a refused request is 429 with ``Retry-After``.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkflow.rate_limit import Grant, Rate, TokenBucket
from ingest_api.errors import TooManyRequests

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATE_KEY = "ratelimit_headers"


class RequestLimits:
    def __init__(self, buckets: TokenBucket, writes: Rate, reads: Rate) -> None:
        self._buckets = buckets
        self._writes = writes
        self._reads = reads

    async def check(self, request: Request, account_id: str) -> None:
        kind, rate = ("write", self._writes) if request.method in _WRITES else ("read", self._reads)
        grant = await self._buckets.take(f"{kind}:{account_id}", 1, rate)
        headers = _headers(grant, rate)
        if not grant.granted:
            headers["Retry-After"] = str(max(1, math.ceil(grant.retry_after)))
            raise TooManyRequests(
                f"too many {kind} requests for this account; retry after {headers['Retry-After']}s",
                {"limit_per_minute": rate.per_minute, "kind": kind},
                headers,
            )
        request.scope.setdefault("state", {})[_STATE_KEY] = headers


def _headers(grant: Grant, rate: Rate) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(rate.per_minute),
        "RateLimit-Remaining": str(grant.remaining),
        "RateLimit-Reset": str(math.ceil(rate.seconds_to_fill(grant.remaining))),
    }


class RateLimitHeaders:
    """ASGI middleware: adds the headers a handler's limit check left in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get(_STATE_KEY)
                if extra:
                    message["headers"] = [
                        *message.get("headers", []),
                        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
