"""Per-account row allowance: a token bucket in Redis, shared by every agent replica.

One Lua script reads, refills and takes in a single atomic step, so replicas
never race on a bucket. A request is all or nothing: a chunk is processed
whole or deferred whole, which keeps an account's rows in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bulkflow import constants

_SCRIPT = (Path(__file__).parent / "lua" / "token_bucket.lua").read_text()
KEY_PREFIX = "bulkflow:rows:"  # + account id


@dataclass(frozen=True)
class Allowance:
    """An account's limit: rows per minute, and the burst the bucket holds."""

    rows_per_minute: int = constants.ROWS_PER_MINUTE

    @property
    def capacity(self) -> int:
        # A burst of a tenth of a minute, never less than one chunk: a chunk
        # is taken whole, so a smaller bucket could never grant it.
        return max(constants.ROWS_PER_CHUNK, self.rows_per_minute // 10)

    @property
    def per_ms(self) -> float:
        return self.rows_per_minute / 60_000


@dataclass(frozen=True)
class Grant:
    granted: bool
    retry_after: float  # seconds until the rows would be granted; 0 if granted


class RowLimiter:
    def __init__(self, redis: Redis, prefix: str = KEY_PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_SCRIPT)

    async def take(
        self, account_id: str, rows: int, allowance: Allowance, now_ms: int | None = None
    ) -> Grant:
        """Take ``rows`` tokens from the account's bucket, or say when they will be there."""
        args: list[float] = [allowance.capacity, allowance.per_ms, rows]
        if now_ms is not None:
            args.append(now_ms)
        granted, wait_ms = await self._take(keys=[self._prefix + account_id], args=args)
        return Grant(bool(granted), int(wait_ms) / 1000)
