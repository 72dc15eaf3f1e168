"""A task that lives exactly as long as an ``async with`` block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any


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
