"""``bulkflow bench-scaling``: one workload, 1, 2 and 4 agent replicas, one table.

Each run is a whole ``bulkflow bench`` (its own database, topics and
processes, verified like any other) on ``--accounts`` CSV actions at once, so
that the replicas have partitions to share: an account's chunks go to one
partition, and one replica applies them in order. The small actions' latency
is left out; it does not depend on the replicas.

The table says, per run, what the README's "Scaling out on this machine"
shows: rows/s, the ratio to the same run's ceiling, CPU per row by component
and the peak RSS of the API, the largest agent replica and the sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bulkflow.settings import Settings
from ops.bench.bench import ROLES, run_bench

AGENTS = (1, 2, 4)  # replicas per run
ACCOUNTS = 8  # CSV actions at once: more than the most replicas, so every one has work
#: Components of the table's CPU columns, as the bench's ``cpu.components`` names them.
COMPONENTS = ("api", "agents", "sink", "bulkflow", "postgres", "kafka", "redis", "rest")
_REST = "rest of the machine"  # as the bench names it; "rest" in the table


async def run_scaling(
    settings: Settings,
    *,
    rows: int,
    accounts: int = ACCOUNTS,
    agents: Sequence[int] = AGENTS,
    out: Path | None = None,
) -> str:
    """Run the bench once per replica count; return the table (and write it with ``out``)."""
    reports = []
    for replicas in agents:
        print(f"--- {replicas} agent replica(s), {accounts} accounts, {rows:,} rows ---")
        report = await run_bench(
            settings, rows=rows, accounts=accounts, agents=replicas, latency=False
        )
        reports.append(orjson.loads(orjson.dumps(asdict(report))))
    table = scaling_table(reports)
    print(table)
    if out is not None:
        body = orjson.dumps({"runs": reports, "table": table}, option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(out.write_bytes, body)
        await asyncio.to_thread(out.with_suffix(".md").write_text, table)
    return table


def scaling_table(reports: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of bench reports (as their JSON), one line per run."""
    header = [
        "agents",
        "accounts",
        "rows",
        "rows/s",
        "ceiling rows/s",
        "pipeline / ceiling",
        *(f"{name} µs/row" for name in COMPONENTS),
        "all µs/row",
        "busy cores",
        "peak RSS MB (api / agent / sink)",
    ]
    lines = [_line(header), _line(["---"] + ["---:"] * (len(header) - 1))]
    for report in reports:
        pipeline = report["pipeline"]
        cpu = pipeline["cpu"]
        components = _components(cpu)
        lines.append(
            _line(
                [
                    str(pipeline["agents"]),
                    str(report["accounts"]),
                    f"{report['rows']:,}",
                    f"{pipeline['rows_per_second']:,}",
                    f"{report['ceiling_rows_per_second']:,}",
                    f"{report['ratios']['pipeline/ceiling']:.2f}",
                    *(
                        _us(components.get(_REST if name == "rest" else name))
                        for name in COMPONENTS
                    ),
                    _us(components.get("all")),
                    f"{cpu['busy_cores']} of {cpu['cores']}",
                    " / ".join(f"{_peak_rss(pipeline, role):.0f}" for role in ROLES),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _components(cpu: dict[str, Any]) -> dict[str, float]:
    """By component; a report from before they were in the JSON: from its processes."""
    if "components" in cpu:
        components: dict[str, float] = cpu["components"]
        return components
    per_row: dict[str, float] = cpu["us_per_row"]
    by_role = {
        role: sum(us for name, us in per_row.items() if name.split("#")[0] == role)
        for role in ROLES
    }
    others = {name: us for name, us in per_row.items() if "#" not in name}
    return {**by_role, "bulkflow": sum(by_role.values()), **others}


def _peak_rss(pipeline: dict[str, Any], role: str) -> float:
    """The role's largest process: replicas are alike, the largest is what to size for."""
    return max(
        (
            m["rss_mb"]
            for name, m in pipeline["peak_memory_mb"].items()
            if name.split("#")[0] == role
        ),
        default=0.0,
    )


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"  # a service not on this machine


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
