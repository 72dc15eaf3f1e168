"""`bulkflow demo` against the test server: generates, uploads, waits, checks counts."""

from __future__ import annotations

import os
import subprocess
import sys

from bulkflow.settings import Settings
from tests.conftest import settings_env


def test_demo_completes_with_the_expected_counts(server: str, database: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "demo", "--rows", "3000", "--account", "demo-test"],
        env={**os.environ, **settings_env(database)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "counts match the generated sample" in result.stdout
    assert "status: completed" in result.stdout
