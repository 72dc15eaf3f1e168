"""The one retry policy: failures by SQLSTATE, outages waited out (on an injected clock)."""

from __future__ import annotations

import asyncpg
import pytest

from bulkflow.retry import Failure, Retriable, classify, persistently, until_answers

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.AdminShutdownError("restart"), Failure.UNAVAILABLE),  # 57P01
        (asyncpg.CannotConnectNowError("starting up"), Failure.UNAVAILABLE),  # 57P03
        (asyncpg.ConnectionDoesNotExistError("gone"), Failure.UNAVAILABLE),  # 08003
        (ConnectionRefusedError(111, "refused"), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),
        (asyncpg.SerializationError("race"), Failure.TRANSIENT),  # 40001
        (asyncpg.DeadlockDetectedError("deadlock"), Failure.TRANSIENT),  # 40P01
        (asyncpg.QueryCanceledError("statement timeout"), Failure.TRANSIENT),  # 57014
        (asyncpg.LockNotAvailableError("nowait"), Failure.TRANSIENT),  # 55P03
        (asyncpg.TooManyConnectionsError("full"), Failure.TRANSIENT),  # 53300
        (Retriable("ours"), Failure.TRANSIENT),
        (asyncpg.UniqueViolationError("taken"), Failure.PERMANENT),  # 23505
        (asyncpg.CheckViolationError("check"), Failure.PERMANENT),
        (asyncpg.InterfaceError("another operation is in progress"), Failure.PERMANENT),
        (ValueError("a bug"), Failure.PERMANENT),
    ],
)
def test_failures_are_classified_by_sqlstate(error: BaseException, expected: Failure) -> None:
    assert classify(error) is expected


def test_a_client_error_while_handling_a_lost_connection_is_an_outage() -> None:
    closed = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the connection is closed")
    closed.__context__ = asyncpg.AdminShutdownError("terminating connection")
    assert classify(closed) is Failure.UNAVAILABLE


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_outage_is_waited_out_however_long_it_lasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, probes = Clock(), 0

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if clock.now < 600:  # ten minutes away
            raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr("bulkflow.retry.asyncio.sleep", sleep)
    assert await until_answers(probe, "Postgres", interval=1.0, clock=clock) == 600
    assert probes == 601


async def test_work_that_must_not_be_dropped_is_retried_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, attempts = Clock(), 0

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    async def step() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 100:
            raise OSError("broker away")
        return "sent"

    monkeypatch.setattr("bulkflow.retry.asyncio.sleep", sleep)
    assert await persistently("sending", step, interval=1.0, clock=clock) == "sent"
    assert (attempts, clock.now) == (100, 99.0)
