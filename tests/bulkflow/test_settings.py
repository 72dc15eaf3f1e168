"""Settings handed to a child process through the environment arrive unchanged (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bulkflow.settings import Settings


def test_as_env_gives_a_child_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = Settings(
        state_dir=Path("/tmp/elsewhere"),
        topic_prefix="x.",
        postgres_dsn=SecretStr("postgresql://u:secret@db:5432/d"),
        clickhouse_url=SecretStr("chdb:///tmp/elsewhere/ch"),
        admin_token=SecretStr("t0ken"),
        consumer_session_timeout=7.5,
        api_port=9999,
    )
    for name, value in chosen.as_env().items():
        monkeypatch.setenv(name, value)

    assert Settings() == chosen
