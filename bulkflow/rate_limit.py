"""Token buckets in Redis, shared by every process: row limits and request limits.

One Lua script reads, refills and takes in a single atomic step on the Redis
clock, so replicas never race on a bucket. A take is all or nothing: a chunk
is processed whole or deferred whole, which keeps an account's rows in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bulkflow import constants

_SCRIPT = (Path(__file__).parent / "lua" / "token_bucket.lua").read_text()


@dataclass(frozen=True)
class Rate:
    """Tokens per minute, and the burst a full bucket holds."""

    per_minute: int
    burst: int

    @property
    def per_ms(self) -> float:
        return self.per_minute / 60_000

    def seconds_to_fill(self, tokens: int) -> float:
        return max(self.burst - tokens, 0) / (self.per_minute / 60)


def row_rate(rows_per_minute: int) -> Rate:
    """An account's row allowance: a burst of a tenth of a minute, at least one chunk
    (a chunk is taken whole, so a smaller bucket could never grant it)."""
    return Rate(rows_per_minute, max(constants.ROWS_PER_CHUNK, rows_per_minute // 10))


@dataclass(frozen=True)
class Grant:
    granted: bool
    retry_after: float  # seconds until the tokens would be granted; 0 if granted
    remaining: int  # whole tokens left in the bucket


class TokenBucket:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._prefix = prefix
        self._take = redis.register_script(_SCRIPT)

    async def take(self, key: str, amount: int, rate: Rate, now_ms: int | None = None) -> Grant:
        """Take ``amount`` tokens from the bucket ``key``, or say when they will be there."""
        args: list[float] = [rate.burst, rate.per_ms, amount]
        if now_ms is not None:
            args.append(now_ms)
        granted, wait_ms, remaining = await self._take(keys=[self._prefix + key], args=args)
        return Grant(bool(granted), int(wait_ms) / 1000, int(remaining))
