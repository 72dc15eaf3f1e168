"""`bulkflow demo` against the test server: generates, uploads, waits, checks counts."""

from __future__ import annotations

import os

from bulkflow.settings import Settings
from tests.conftest import settings_env
from tests.support import run_cli


def test_demo_completes_with_the_expected_counts(server: str, database: Settings) -> None:
    result = run_cli(
        "demo",
        "--rows",
        "3000",
        "--account",
        "demo-test",
        env={**os.environ, **settings_env(database)},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "counts match the generated sample" in result.stdout
    assert "status: completed" in result.stdout
