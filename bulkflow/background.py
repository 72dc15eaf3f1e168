"""Tasks that live exactly as long as an ``async with`` block, and the loops they run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

from bulkflow.retry import Failure, classify, until_answers

log = logging.getLogger(__name__)


@asynccontextmanager
async def background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task inside the block; on exit, cancel it and wait until it stops."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def poll_forever(
    what: str,
    step: Callable[[], Awaitable[object]],
    *,
    idle: float,
    probe: Callable[[], Awaitable[object]],
) -> None:
    """Run ``step`` again and again: at once while it returns something truthy
    (work was done), else after ``idle`` seconds.

    A failure while ``probe`` fails too is an outage: waited out with a line
    in the log now and then, not a traceback per attempt. Other failures are
    logged and tried again.
    """
    while True:
        try:
            busy = bool(await step())
        except Exception as exc:
            busy = False
            if classify(exc) is Failure.UNAVAILABLE and not await _answers(probe):
                await until_answers(probe, what)
                continue
            log.exception("%s failed; trying again", what)
        await asyncio.sleep(0 if busy else idle)


async def _answers(probe: Callable[[], Awaitable[object]]) -> bool:
    try:
        await probe()
    except Exception:
        return False
    return True
