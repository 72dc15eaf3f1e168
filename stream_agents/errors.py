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


#: SQLSTATEs a row can cause, by the condition names Postgres documents
#: (Appendix A): a row failing one of these fails alone, with this reason.
_ROW_CONDITIONS = {
    "22001": "string_data_right_truncation",
    "22003": "numeric_value_out_of_range",
    "22007": "invalid_datetime_format",
    "22008": "datetime_field_overflow",
    "22021": "character_not_in_repertoire",
    "22P02": "invalid_text_representation",
    "22P05": "untranslatable_character",
    "23502": "not_null_violation",
    "23503": "foreign_key_violation",
    "23505": "unique_violation",
    "23514": "check_violation",
    "23P01": "exclusion_violation",
    "54000": "program_limit_exceeded",
}
_ROW_CLASSES = {"22": "data_exception", "23": "integrity_constraint_violation"}


def row_reason(exc: asyncpg.PostgresError) -> str:
    """The reason a row fails with, keyed on the error's SQLSTATE."""
    state = str(exc.sqlstate or "")
    return _ROW_CONDITIONS.get(state) or _ROW_CLASSES.get(state[:2]) or f"database_error_{state}"
