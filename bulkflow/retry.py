"""One retry policy for every loop: what a failure says about the work and its dependency.

Three answers, and what the loops do with each:

- ``UNAVAILABLE``: the dependency is away (a refused or broken connection, a
  server shutting down or starting up). The work is held and the dependency
  probed at the fixed interval for as long as it takes; the wait spends no
  attempt, so no row fails because Postgres restarted.
- ``TRANSIENT``: the dependency answers, but this attempt lost (a deadlock, a
  serialization failure, a lock or statement timeout). Retried at the fixed
  interval, ``RETRY_ATTEMPTS`` times in all.
- ``PERMANENT``: retrying the same work gives the same answer (a constraint a
  row violates, bad data, a misuse of the client).

Postgres errors are told apart by SQLSTATE, which asyncpg's exception classes
carry, never by message text.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from bulkflow import constants

log = logging.getLogger(__name__)
T = TypeVar("T")


class Failure(enum.Enum):
    UNAVAILABLE = "unavailable"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


#: SQLSTATEs (classes of two characters, or whole codes) and what they mean here.
_UNAVAILABLE_STATES = (
    "08",  # connection exception
    "57P01",  # admin_shutdown: what a Postgres restart sends its sessions
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: starting up or shutting down
)
_TRANSIENT_STATES = (
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources: too many connections, out of memory or disk
    "55P03",  # lock_not_available
    "57014",  # query_canceled: the statement timeout
    "0A000",  # feature_not_supported: a cached plan the schema changed under
)


class Retriable(Exception):
    """An error of bulkflow's own that says the same work may succeed on retry."""


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, Retriable):
        return Failure.TRANSIENT
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and isinstance(state, str):
        if state.startswith(_UNAVAILABLE_STATES):
            return Failure.UNAVAILABLE
        if state.startswith(_TRANSIENT_STATES):
            return Failure.TRANSIENT
        return Failure.PERMANENT
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return Failure.UNAVAILABLE  # refused, reset, unreachable, or no answer in time
    if isinstance(exc, asyncpg.InterfaceError) and exc.__context__ is not None:
        # A client error raised while handling another, e.g. a transaction that
        # cannot be rolled back because its connection was lost: the first
        # error says what happened.
        return classify(exc.__context__)
    return Failure.PERMANENT


async def until_answers(
    probe: Callable[[], Awaitable[object]],
    what: str,
    *,
    interval: float = constants.RETRY_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Call ``probe`` every ``interval`` seconds until it returns; return the seconds waited.

    No limit: the caller holds its work meanwhile, and without the dependency
    there is nothing else it could do with it.
    """
    started = clock()
    next_log = started
    while True:
        try:
            await probe()
        except Exception as exc:
            now = clock()
            if now >= next_log:
                log.warning(
                    "%s unreachable for %.0f s (%s); waiting", what, now - started, repr(exc)
                )
                next_log = now + constants.OUTAGE_LOG_EVERY
        else:
            waited = clock() - started
            if waited >= interval:
                log.warning("%s answers again after %.0f s", what, waited)
            return waited
        await asyncio.sleep(interval)


async def persistently(
    what: str,
    step: Callable[[], Awaitable[T]],
    *,
    interval: float = constants.RETRY_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``step`` until it succeeds, at the fixed interval, however long that takes.

    For work that must not be dropped: a Kafka batch is acknowledged once its
    handler returns, so a handler that gave up would lose what it held. The
    first failure is logged with its traceback, later ones at most every
    ``OUTAGE_LOG_EVERY`` seconds.
    """
    attempt = 0
    next_log = clock()
    while True:
        attempt += 1
        try:
            return await step()
        except Exception as exc:
            now = clock()
            if now >= next_log:
                log.warning(
                    "%s failed (attempt %d: %r); retrying every %g s",
                    what,
                    attempt,
                    exc,
                    interval,
                    exc_info=exc if attempt == 1 else None,
                )
                next_log = now + constants.OUTAGE_LOG_EVERY
        await asyncio.sleep(interval)


async def through_outage(
    step: Callable[[], Awaitable[T]],
    *,
    patience: float,
    interval: float = constants.RETRY_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``step``, again at the interval while its dependency is unavailable.

    For a request that holds a client: it waits out an outage of up to
    ``patience`` seconds, then the last error is raised (a 503 at the edge).
    """
    deadline = clock() + patience
    while True:
        try:
            return await step()
        except Exception as exc:
            if classify(exc) is not Failure.UNAVAILABLE or clock() >= deadline:
                raise
        await asyncio.sleep(interval)
