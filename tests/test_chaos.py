"""Each ``bulkflow chaos`` scenario, small: a few thousand rows, real outages.

The scenarios stop Postgres, Kafka and Redis: they run against a private set
of services of this module's own, never the shared ones (the session's, other
people's). The runner waits on
conditions with deadlines; nothing here is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bulkflow import constants
from bulkflow.settings import Settings
from ops.bench.chaos import private_services, run_scenario, table
from ops.dev.local_services import Supervisor
from tests.support import run_cli

pytestmark = pytest.mark.anyio

ROWS = 3_000
#: Seconds down: as long as in a real incident's first minute, short enough for a suite.
OUTAGES = {"postgres": 30.0, "kafka": 15.0, "redis": 15.0}


@pytest.fixture(scope="module")
async def chaos_services(local_services: Settings) -> AsyncIterator[tuple[Settings, Supervisor]]:
    async with private_services(local_services) as services:
        yield services


async def test_the_services_it_stops_are_its_own(
    chaos_services: tuple[Settings, Supervisor], local_services: Settings
) -> None:
    """Other people's tests use the shared instances: the suite never stops those."""
    _, supervisor = chaos_services
    private = await asyncio.to_thread(supervisor.status)
    shared = await asyncio.to_thread(Supervisor(local_services).status)
    assert all(s.ready for s in private)
    assert not {s.port for s in private} & {s.port for s in shared}
    assert not {s.pid for s in private} & {s.pid for s in shared}
    assert all(s.log.parent != t.log.parent for s, t in zip(private, shared, strict=True))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", constants.CHAOS_SCENARIOS)
async def test_scenario_verifies(
    scenario: str,
    chaos_services: tuple[Settings, Supervisor],
    tmp_path: Path,
) -> None:
    services, supervisor = chaos_services
    result = await run_scenario(
        services, supervisor, scenario, ROWS, OUTAGES.get(scenario, 0.0), tmp_path
    )

    evidence = "\n".join([table([result]), *result.log_excerpt])
    assert result.verified, evidence


def test_an_unknown_scenario_is_refused_before_anything_runs() -> None:
    done = run_cli("chaos", "--scenario", "meteor")
    assert done.returncode == 2
    assert "invalid choice: 'meteor'" in done.stderr
