"""The token bucket against the real Redis, on explicit clocks (no sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from bulkflow.rate_limit import Rate, TokenBucket, row_rate

pytestmark = pytest.mark.anyio


async def test_burst_then_refill_at_the_rate(limiter: TokenBucket) -> None:
    allowance = row_rate(6_000)  # 100 rows/s, bucket of 600
    assert allowance.burst == 600
    assert (await limiter.take("a", 500, allowance, now_ms=0)).granted
    refused = await limiter.take("a", 500, allowance, now_ms=0)
    assert not refused.granted
    assert refused.retry_after == pytest.approx(4.0)  # 400 missing at 100/s
    assert not (await limiter.take("a", 500, allowance, now_ms=3_999)).granted
    assert (await limiter.take("a", 500, allowance, now_ms=4_000)).granted


async def test_rows_over_a_minute_stay_within_limit_plus_one_bucket(limiter: TokenBucket) -> None:
    allowance = row_rate(600)  # bucket of one 500-row chunk
    granted_at = []
    for now in range(0, 120_000, 250):  # ask for a chunk every 250 ms for two minutes
        if (await limiter.take("a", 500, allowance, now_ms=now)).granted:
            granted_at.append(now)
    for start in range(0, 60_001, 250):
        in_minute = sum(500 for t in granted_at if start <= t < start + 60_000)
        assert in_minute <= 600 + allowance.burst
    assert len(granted_at) * 500 >= 1_200 - 500  # and the allowance is actually used


async def test_accounts_have_separate_buckets(limiter: TokenBucket) -> None:
    allowance = row_rate(600)
    assert (await limiter.take("a", 500, allowance, now_ms=0)).granted
    assert not (await limiter.take("a", 500, allowance, now_ms=0)).granted
    assert (await limiter.take("b", 500, allowance, now_ms=0)).granted


async def test_concurrent_takers_never_overdraw(limiter: TokenBucket) -> None:
    allowance = row_rate(60_000)  # bucket of 6,000
    grants = await asyncio.gather(*(limiter.take("a", 500, allowance, now_ms=0) for _ in range(40)))
    assert sum(g.granted for g in grants) == 12


async def test_remaining_tokens_are_reported(limiter: TokenBucket) -> None:
    rate = Rate(per_minute=60, burst=3)
    grants = [await limiter.take("r", 1, rate, now_ms=0) for _ in range(4)]
    assert [(g.granted, g.remaining) for g in grants] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert grants[-1].retry_after == pytest.approx(1.0)
    assert rate.seconds_to_fill(0) == pytest.approx(3.0)
