"""Settings handed to a child process through the environment arrive unchanged (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bulkflow.settings import Settings
from ops.cli import main


def test_as_env_gives_a_child_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = Settings(
        state_dir=Path("/tmp/elsewhere"),
        topic_prefix="x.",
        postgres_dsn=SecretStr("postgresql://u:secret@db:5432/d"),
        clickhouse_url=SecretStr("chdb:///tmp/elsewhere/ch"),
        admin_token=SecretStr("t0ken" * 8),
        consumer_session_timeout=7.5,
        api_port=9999,
    )
    for name, value in chosen.as_env().items():
        monkeypatch.setenv(name, value)

    assert Settings() == chosen


@pytest.mark.parametrize("token", ["", "t0ken", "x" * 31])
def test_a_short_admin_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(admin_token=SecretStr(token))


def test_the_command_line_names_the_setting_to_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BULKFLOW_ADMIN_TOKEN", "test-admin-token")
    assert main(["accounts", "list"]) == 2  # before anything connects
    error = capsys.readouterr().err
    assert error.startswith("error: BULKFLOW_ADMIN_TOKEN: needs at least 32 characters")
