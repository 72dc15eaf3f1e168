"""`bulkflow bench-scaling`'s table, from reports as the bench writes them (no runs here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ops.bench.scaling import scaling_table
from tests.support import run_cli


def _report(agents: int, rows_per_second: int) -> dict[str, Any]:
    """The parts of a `bulkflow bench` JSON report that the table reads."""
    replicas = {f"agents#{3 + k}": 10.0 / agents for k in range(agents)}
    return {
        "rows": 80_000,
        "accounts": 8,
        "ceiling_rows_per_second": 100_000,
        "ratios": {"pipeline/ceiling": rows_per_second / 100_000},
        "pipeline": {
            "agents": agents,
            "rows_per_second": rows_per_second,
            "peak_memory_mb": {
                "api#1": {"rss_mb": 90.0, "private_mb": 70.0},
                "sink#2": {"rss_mb": 400.0, "private_mb": 180.0},
                **{
                    name: {"rss_mb": 200.0 + k, "private_mb": 150.0}
                    for k, name in enumerate(replicas)
                },
            },
            "cpu": {
                "cores": 2,
                "busy_cores": 1.5,
                "us_per_row": {
                    "api#1": 6.0,
                    "sink#2": 3.0,
                    **replicas,
                    "postgres": 20.0,
                    "kafka": 5.0,
                    "redis": 0.5,
                    "rest of the machine": 1.5,
                    "all": 46.0,
                },
                "components": {
                    "api": 6.0,
                    "agents": 10.0,
                    "sink": 3.0,
                    "bulkflow": 19.0,
                    "postgres": 20.0,
                    "kafka": 5.0,
                    "redis": 0.5,
                    "rest of the machine": 1.5,
                    "all": 46.0,
                },
            },
        },
    }


def test_one_line_per_run_with_cpu_by_component_and_the_largest_replica() -> None:
    lines = scaling_table([_report(1, 30_000), _report(4, 40_000)]).splitlines()

    assert len(lines) == 4  # header, alignment, two runs
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    one, four = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:])
    assert dict(zip(header, one, strict=True)) == {
        "agents": "1",
        "accounts": "8",
        "rows": "80,000",
        "rows/s": "30,000",
        "ceiling rows/s": "100,000",
        "pipeline / ceiling": "0.30",
        "api µs/row": "6.0",
        "agents µs/row": "10.0",
        "sink µs/row": "3.0",
        "bulkflow µs/row": "19.0",
        "postgres µs/row": "20.0",
        "kafka µs/row": "5.0",
        "redis µs/row": "0.5",
        "rest µs/row": "1.5",
        "all µs/row": "46.0",
        "busy cores": "1.5 of 2",
        "peak RSS MB (api / agent / sink)": "90 / 200 / 400",
    }
    assert four[header.index("peak RSS MB (api / agent / sink)")] == "90 / 203 / 400"


def test_a_report_from_before_the_components_is_summed_from_its_processes() -> None:
    report = _report(2, 30_000)
    del report["pipeline"]["cpu"]["components"]
    line = scaling_table([report]).splitlines()[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[6:10] == ["6.0", "10.0", "3.0", "19.0"]  # api, both replicas, sink, bulkflow


def test_the_command_prints_the_table_of_saved_reports(tmp_path: Path) -> None:
    single = tmp_path / "bench.json"
    single.write_bytes(orjson.dumps(_report(1, 30_000)))
    several = tmp_path / "scaling.json"
    several.write_bytes(orjson.dumps({"runs": [_report(2, 35_000), _report(4, 40_000)]}))
    done = run_cli("bench-scaling", "--table", str(single), str(several))
    assert done.returncode == 0, done.stderr
    assert [line.split("|")[1].strip() for line in done.stdout.splitlines()[2:]] == ["1", "2", "4"]


def test_impossible_sizes_are_refused_before_anything_runs() -> None:
    done = run_cli("bench-scaling", "--rows", "7")
    assert done.returncode != 0
    assert "--rows must be at least --accounts" in done.stderr
