"""The agents' own failures, and how the one retry policy reads the database's."""

from __future__ import annotations

import asyncpg

from bulkflow.retry import Failure, Retriable, classify


class ConcurrentWrite(Retriable):
    """Another consumer wrote the same entity or chunk meanwhile (e.g. mid-rebalance)."""


class RetriesExhausted(Exception):
    """A transient failure outlived every attempt while the database answered."""

    def __init__(self, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{attempts} attempts failed, last with {type(cause).__name__}: {cause}")
        self.attempts = attempts
        self.cause = cause


def failure(exc: BaseException) -> Failure:
    """:func:`bulkflow.retry.classify`, knowing the agents' one retriable constraint."""
    # The ledger's key: another consumer recorded the chunk first; the retry
    # replays its outcomes. Any other unique index is the row's fault.
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "chunk_ledger_pkey":
        return Failure.TRANSIENT
    return classify(exc)


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt of the same work (an outage or a lost race)."""
    return failure(exc) is not Failure.PERMANENT
