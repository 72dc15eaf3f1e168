"""Failures the agents tell apart by class: retry the batch, or fail its rows."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import asyncpg


class AgentError(Exception):
    """Root of the agents' own errors; ``retriable`` says what to do with one."""

    retriable: ClassVar[bool] = False


class ConcurrentWrite(AgentError):
    """Another consumer wrote the same entity or chunk meanwhile (e.g. mid-rebalance)."""

    retriable = True


class RetriesExhausted(AgentError):
    """A transient failure outlived every attempt."""

    def __init__(self, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{attempts} attempts failed, last with {type(cause).__name__}: {cause}")
        self.attempts = attempts
        self.cause = cause


#: Failures that say nothing about the rows: the same work may succeed on retry.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.InvalidCachedStatementError,  # the schema changed under a prepared statement
    OSError,
    asyncio.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, AgentError):
        return exc.retriable
    if isinstance(exc, asyncpg.UniqueViolationError):
        # Only the ledger's key: another consumer recorded the chunk first.
        return bool(exc.constraint_name == "chunk_ledger_pkey")
    return isinstance(exc, _TRANSIENT)
