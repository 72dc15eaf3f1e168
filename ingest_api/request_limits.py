"""Request limits: token buckets per client address, and per account for writes and reads.

Before the API key is looked at, a request takes a token from its client
address's bucket, and is refused outright while that address has used up its
failed authentications (so guessing keys costs no database lookup). Then the
account's buckets: writes, and a separate, generous allowance for reads.

Every authenticated response carries ``RateLimit-Limit`` (requests per
minute), ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the
bucket is full again); a refused request is 429 with ``Retry-After``.

While Redis is unavailable the limits cannot be counted: reads go on
unlimited (fail open), writes are 503 (each write can queue many rows).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkflow import metrics
from bulkflow.rate_limit import Grant, Rate, TokenBucket
from bulkflow.settings import Settings
from ingest_api.errors import TooManyRequests, Unavailable

log = logging.getLogger(__name__)

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATE_KEY = "ratelimit_headers"
_WARN_EVERY = 60.0  # seconds between log lines about Redis being unavailable
_UNAVAILABLE_RETRY = "5"  # seconds, the Retry-After of a 503
#: Seconds after a Redis error without asking Redis again: an outage costs
#: each request nothing rather than a connection timeout per bucket.
_RETRY_REDIS_AFTER = 1.0


@dataclass(frozen=True)
class AddressRates:
    """Allowances of one client address, before authentication."""

    requests: Rate
    auth_failures: Rate


def address_rates(settings: Settings) -> AddressRates:
    return AddressRates(
        requests=Rate(settings.api_address_requests_per_minute, settings.api_address_burst),
        auth_failures=Rate(settings.api_auth_failures_per_minute, settings.api_auth_failure_burst),
    )


class RequestLimits:
    def __init__(
        self, buckets: TokenBucket, writes: Rate, reads: Rate, addresses: AddressRates
    ) -> None:
        self._buckets = buckets
        self._writes = writes
        self._reads = reads
        self._addresses = addresses
        self._warned_at = -math.inf
        self._down_until = -math.inf

    async def check_address(self, request: Request) -> None:
        """Before authentication: the address's allowance, and its failed authentications."""
        address = _address(request)
        rates = self._addresses
        grant = await self._take(request, f"address:{address}", 1, rates.requests)
        if grant is not None and not grant.granted:
            raise _refused(
                grant.retry_after,
                f"too many requests from {address}",
                {"limit_per_minute": rates.requests.per_minute, "kind": "address"},
            )
        # Taking nothing reads the bucket as refilled now.
        failures = await self._take(request, f"auth:{address}", 0, rates.auth_failures)
        if failures is not None and failures.remaining < 1:
            raise _refused(
                60 / rates.auth_failures.per_minute,
                f"too many failed authentications from {address}",
                {"limit_per_minute": rates.auth_failures.per_minute, "kind": "auth_failures"},
            )

    async def auth_failed(self, request: Request) -> None:
        """Count a refused API key against its client address."""
        await self._take(
            request, f"auth:{_address(request)}", 1, self._addresses.auth_failures, quiet=True
        )

    async def check(self, request: Request, account_id: str) -> None:
        kind, rate = ("write", self._writes) if request.method in _WRITES else ("read", self._reads)
        grant = await self._take(request, f"{kind}:{account_id}", 1, rate)
        if grant is None:
            return
        headers = _headers(grant, rate)
        if not grant.granted:
            raise _refused(
                grant.retry_after,
                f"too many {kind} requests for this account",
                {"limit_per_minute": rate.per_minute, "kind": kind},
                headers,
            )
        request.scope.setdefault("state", {})[_STATE_KEY] = headers

    async def _take(
        self, request: Request, key: str, amount: int, rate: Rate, *, quiet: bool = False
    ) -> Grant | None:
        """The bucket's answer; None when Redis cannot say and the request may go on."""
        if time.monotonic() >= self._down_until:
            try:
                return await self._buckets.take(key, amount, rate)
            except RedisError as exc:
                now = time.monotonic()
                self._down_until = now + _RETRY_REDIS_AFTER
                if now - self._warned_at >= _WARN_EVERY:
                    self._warned_at = now
                    log.warning("request limits unavailable (Redis: %s)", exc or type(exc).__name__)
        if quiet or request.method not in _WRITES:
            return None
        raise Unavailable(
            "request limits cannot be checked right now (Redis is unavailable); retry shortly",
            None,
            {"Retry-After": _UNAVAILABLE_RETRY},
        )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refused(
    retry_after: float,
    message: str,
    details: dict[str, object],
    headers: dict[str, str] | None = None,
) -> TooManyRequests:
    metrics.RATE_LIMITED.labels(str(details["kind"])).inc()
    seconds = str(max(1, math.ceil(retry_after)))
    return TooManyRequests(
        f"{message}; retry after {seconds}s", details, {**(headers or {}), "Retry-After": seconds}
    )


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
