"""Process set-up of ``bulkflow serve`` that a role's code cannot see for itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_a_role_reads_chunks_and_converts_python_values_without_importing_pandas() -> None:
    """pyarrow would import pandas (~40 MB of every process) to tell its objects apart."""
    script = """
import sys
from ops.server import keep_pandas_out

keep_pandas_out()
import pyarrow as pa
import pyarrow.compute as pc
from schemas.column_reader import warm_up
from schemas.action import ACTIONS
from schemas.entity import ENTITIES
from schemas.options import ActionOptions

warm_up(ACTIONS["upsert"].chunk_reader(ENTITIES["contact"], ActionOptions()))
assert pc.equal(pa.array(["a", ""]), "").to_pylist() == [False, True]
assert "pandas" not in sys.modules
try:
    import pandas
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("pandas was imported")
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("wiring", "absent"),
    [
        ("ops.stream_roles", ["ingest_api.app", "ingest_api.routes"]),
        ("ops.api_role", ["faust", "stream_agents.batch"]),
    ],
    ids=["agents or sink", "api"],
)
def test_a_process_loads_the_wiring_of_its_own_roles_only(wiring: str, absent: list[str]) -> None:
    """An agent replica does not load the API's app and routes (~10 MB), nor an
    API replica Faust and the agents (``ops/api_role.py``, ``ops/stream_roles.py``)."""
    script = f"""
import sys
import ops.server
import {wiring}

assert not set({absent!r}) & sys.modules.keys(), {absent!r}
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
