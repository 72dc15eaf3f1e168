"""Why a row fails when the database refuses it: reasons keyed on SQLSTATE."""

from __future__ import annotations

import asyncpg
import pytest

from stream_agents.errors import row_reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (asyncpg.CheckViolationError("check"), "check_violation"),  # 23514
        (asyncpg.NotNullViolationError("null"), "not_null_violation"),  # 23502
        (asyncpg.NumericValueOutOfRangeError("big"), "numeric_value_out_of_range"),  # 22003
        (asyncpg.IntegrityConstraintViolationError("other"), "integrity_constraint_violation"),
        (asyncpg.InvalidBinaryRepresentationError("bytes"), "data_exception"),  # 22P03
        (asyncpg.InsufficientPrivilegeError("grant"), "database_error_42501"),
    ],
)
def test_a_row_fails_with_a_reason_keyed_on_sqlstate(
    error: asyncpg.PostgresError, reason: str
) -> None:
    assert row_reason(error) == reason
