"""`bulkflow start` / `stop`: the server in the background, found again by its PID file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from bulkflow.settings import Settings
from ops.bench.fleet import free_port
from ops.dev import daemon

pytestmark = [
    pytest.mark.anyio,
    # start() leaves the server running on purpose: that is what a daemon is for.
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def test_start_answers_and_stop_ends_it(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.model_copy(
        update={
            "state_dir": tmp_path,
            "clickhouse_url": SecretStr(f"chdb://{tmp_path / 'clickhouse'}"),
            "api_port": free_port(),
            "embedded_clickhouse_port": free_port(),
        }
    )
    try:
        pid = await asyncio.to_thread(daemon.start, settings)
        assert daemon.running_pid(settings) == pid
        assert daemon.healthy(settings)
        assert await asyncio.to_thread(daemon.start, settings) == pid  # running: the same one
    finally:
        await asyncio.to_thread(daemon.stop, settings)
    assert daemon.running_pid(settings) is None
    assert not daemon.healthy(settings)
