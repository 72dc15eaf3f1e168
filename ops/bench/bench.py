"""``bulkflow bench``: the whole pipeline against what Postgres alone can absorb.

In one run, on the same generated rows and the same Postgres table and index,
the two baselines of :mod:`ops.bench.baselines` and the **pipeline**: the real
thing as separate processes (:mod:`ops.bench.fleet`), the CSV uploaded through
the API, done when every row's outcome is in ClickHouse. Then the latency of
small actions on the same processes.

A run whose counts, Postgres rows or ClickHouse outcomes differ from what the
generator knows is a failure, not a number.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bulkflow import sql
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from ingest_api.accounts import create_account, set_rows_per_minute
from ops.bench import baselines
from ops.bench.fleet import Fleet, machine_busy_seconds, process_tree_cpu_seconds
from ops.bench.isolation import UNLIMITED, isolated_settings, release
from ops.demo import bearer, upload_csv
from ops.dev.local_services import Supervisor
from ops.sample import SampleExpectation, write_contacts_csv

POLL = 0.2  # seconds between progress looks
LATENCY_ACTIONS = 20
LATENCY_ROWS = 100
KILL_AT = 1 / 3  # of the rows processed, when --kill-agent kills a replica
#: The services whose CPU the bench names, when they run on this machine as
#: `bulkflow services up` started them (their PIDs are in the state dir).
SERVICES = ("postgres", "kafka", "redis")
#: The roles whose processes are bulkflow's own CPU (issue 17's target is their sum).
ROLES = ("api", "agents", "sink")


class BenchFailed(RuntimeError):
    """The pipeline produced other data than the generator expects."""


@dataclass
class PipelineResult:
    rows: int
    agents: int
    seconds: float
    rows_per_second: float
    upload_seconds: float
    first_outcome_seconds: float
    sink_lag_seconds: float
    replicas_killed: int
    replicas_started: int
    #: Share of the rows processed when a replica was killed (--kill-agent).
    killed_at_fraction: float | None
    peak_memory_mb: dict[str, dict[str, float]]
    cpu: CpuUse


@dataclass
class CpuUse:
    """Where the machine's CPU went while the pipeline ran: is it the limit?"""

    cores: int
    #: Average over the run, every process on the machine.
    busy_cores: float
    #: Per bulkflow process, per local service (Postgres, Kafka, Redis: the
    #: server and every process it started), the rest of the machine (this
    #: command, other work) and all of it. The parts add up to all.
    us_per_row: dict[str, float]
    #: The same by component: agent replicas added up, and ``bulkflow`` =
    #: api + agents + sink, bulkflow's own CPU per row.
    components: dict[str, float]


@dataclass
class Latency:
    actions: int
    rows_each: int
    p50_seconds: float
    p95_seconds: float


@dataclass
class BenchReport:
    rows: int
    accounts: int
    expected: dict[str, int]
    #: The mean of ceiling_runs: measured before and after the pipeline, so that
    #: a change in the shared machine's load shows, and moves the ratio less.
    ceiling_rows_per_second: float
    ceiling_runs: list[int]
    naive_rows_per_second: float
    pipeline: PipelineResult
    latency: Latency | None
    ratios: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    files: list[tuple[Path, SampleExpectation]]

    @property
    def rows(self) -> int:
        return sum(e.rows for _, e in self.files)

    def expected(self) -> dict[str, int]:
        return {
            "succeeded": sum(e.unique for _, e in self.files),
            "failed": sum(e.invalid for _, e in self.files),
            "skipped": sum(e.duplicates for _, e in self.files),
        }


async def run_bench(
    settings: Settings,
    *,
    rows: int,
    accounts: int = 1,
    agents: int = 1,
    kill_agent: bool = False,
    latency: bool = True,
    out: Path | None = None,
) -> BenchReport:
    work = Path(tempfile.mkdtemp(prefix="bulkflow-bench-"))
    bench = await isolated_settings(settings, work, "bench")
    try:
        workload = Workload(
            [
                (
                    work / f"contacts-{k}.csv",
                    write_contacts_csv(
                        work / f"contacts-{k}.csv",
                        rows // accounts,
                        seed=7 + k,
                        domain=f"a{k}.example",
                    ),
                )
                for k in range(accounts)
            ]
        )
        paths = [path for path, _ in workload.files]
        print(f"generated {workload.rows:,} rows in {accounts} file(s) under {work}")
        ceilings = [await _ceiling(bench, paths, "before")]
        naive = await baselines.naive(bench, paths)
        print(f"naive (executemany, 1,000 rows/tx): {naive:,.0f} rows/s")
        await baselines.reset(bench)
        services = _service_pids(settings)  # the bench's own settings name a state dir of its own
        pipeline, small = await _pipeline(
            bench, workload, work, agents, kill_agent, latency, services
        )
        print(
            f"pipeline: {pipeline.rows_per_second:,.0f} rows/s, the machine busy "
            f"{pipeline.cpu.busy_cores} of {pipeline.cpu.cores} cores"
        )
        await baselines.reset(bench)
        ceilings.append(await _ceiling(bench, paths, "after"))
        ceiling = statistics.fmean(ceilings)
        report = BenchReport(
            rows=workload.rows,
            accounts=accounts,
            expected=workload.expected(),
            ceiling_rows_per_second=round(ceiling),
            ceiling_runs=[round(c) for c in ceilings],
            naive_rows_per_second=round(naive),
            pipeline=pipeline,
            latency=small,
            ratios={
                "pipeline/ceiling": round(pipeline.rows_per_second / ceiling, 3),
                "pipeline/naive": round(pipeline.rows_per_second / naive, 3),
            },
        )
    finally:
        await release(settings, bench)
        shutil.rmtree(work, ignore_errors=True)
    body = orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2)
    print(body.decode())
    if out is not None:
        await asyncio.to_thread(out.write_bytes, body)
    return report


def _service_pids(settings: Settings) -> dict[str, int]:
    """The local services' server PIDs; a service that runs elsewhere is not named."""
    supervisor = Supervisor(settings)
    pids = {name: supervisor.pid(supervisor.service(name)) for name in SERVICES}
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        print(f"not on this machine's PID files, counted in the rest: {', '.join(missing)}")
    return {name: pid for name, pid in pids.items() if pid is not None}


async def _ceiling(settings: Settings, paths: list[Path], when: str) -> float:
    """One ceiling measurement, leaving the table empty for what comes next."""
    rows_per_second = await baselines.ceiling(settings, paths)
    print(f"ceiling (COPY + one INSERT ... ON CONFLICT), {when}: {rows_per_second:,.0f} rows/s")
    await baselines.reset(settings)
    return rows_per_second


async def _pipeline(
    settings: Settings,
    workload: Workload,
    work: Path,
    agents: int,
    kill_agent: bool,
    latency: bool,
    services: dict[str, int],
) -> tuple[PipelineResult, Latency | None]:
    async with (
        Fleet.running(settings, work, agents=agents) as fleet,
        httpx.AsyncClient(base_url=settings.api_url, timeout=None) as client,
        connect_pool(settings, size=2) as pool,
    ):
        keys = []
        for k in range(len(workload.files)):
            account = await create_account(pool, f"bench-{k}")
            await set_rows_per_minute(pool, account.id, UNLIMITED)
            keys.append((account.id, account.api_key))
        chaos = _Chaos(fleet) if kill_agent else None
        marks = await _run(client, fleet, workload, keys, chaos, services)
        await _verify(pool, client, workload, keys, marks["ids"])
        small = await _latency(client, keys[0][1]) if latency else None
        fleet.check_alive()
    done = marks["done"]
    return (
        PipelineResult(
            rows=workload.rows,
            agents=agents,
            seconds=round(done, 2),
            rows_per_second=round(workload.rows / done),
            upload_seconds=round(marks["uploaded"], 2),
            first_outcome_seconds=round(marks["first"], 2),
            sink_lag_seconds=round(done - marks["counted"], 2),
            replicas_killed=len(fleet.retired),
            replicas_started=len(fleet.agents()) - agents + len(fleet.retired),
            killed_at_fraction=chaos.fraction if chaos else None,
            peak_memory_mb=fleet.peak_memory(),
            cpu=marks["cpu"],
        ),
        small,
    )


class _Chaos:
    """Once a third of the rows are processed: SIGKILL an agent replica, start another."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self.fraction: float | None = None

    def at(self, fraction: float) -> None:
        if self.fraction is not None or fraction < KILL_AT:
            return
        self.fraction = round(fraction, 3)
        victim = self._fleet.agents()[0]
        print(f"killing {victim.name} (SIGKILL) at {fraction:.0%} and starting a new replica")
        self._fleet.kill(victim)
        self._fleet.spawn("agents", ["agents"])


async def _run(
    client: httpx.AsyncClient,
    fleet: Fleet,
    workload: Workload,
    keys: list[tuple[str, str]],
    chaos: _Chaos | None,
    services: dict[str, int],
) -> dict[str, Any]:
    """Upload every file at once and watch the actions while the uploads stream."""
    started = time.monotonic()
    cpu_before = {**fleet.cpu_seconds(), **_services_cpu(services)}
    busy_before = machine_busy_seconds()
    marks: dict[str, Any] = {}

    async def upload() -> None:
        await asyncio.gather(
            *(
                upload_csv(client, path, key)
                for (path, _), (_, key) in zip(workload.files, keys, strict=True)
            )
        )
        marks["uploaded"] = time.monotonic() - started

    uploading = asyncio.create_task(upload())
    try:
        ids = [await _action_of(client, key, uploading) for _, key in keys]
        while True:
            fleet.check_alive()
            now = time.monotonic() - started
            # ClickHouse is asked only while waiting for the first outcome and
            # after Postgres has counted everything: its stats query is not
            # free, and the bench must not slow down what it measures.
            if "first" not in marks and await _recorded(client, ids) > 0:
                marks["first"] = now
            states = [await _get(client, f"/v1/bulk-actions/{i}", key) for i, key in ids]
            if any(s["status"] == "failed" for s in states):
                raise BenchFailed(f"an action failed: {states}")
            if chaos is not None:
                chaos.at(sum(s["progress"]["processed"] for s in states) / workload.rows)
            if uploading.done() and all(s["status"] == "completed" for s in states):
                marks.setdefault("counted", now)
                if await _recorded(client, ids) >= workload.rows:
                    marks.setdefault("first", now)
                    await uploading
                    # Over the interval the CPU counters cover: from the start until now.
                    cpu = _cpu_use(
                        fleet,
                        services,
                        cpu_before,
                        busy_before,
                        time.monotonic() - started,
                        workload.rows,
                    )
                    return {**marks, "ids": [i for i, _ in ids], "done": now, "cpu": cpu}
            await asyncio.sleep(POLL)
    finally:
        uploading.cancel()


def _services_cpu(services: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each service's process tree; one that went away is left out."""
    spent = {name: process_tree_cpu_seconds(pid) for name, pid in services.items()}
    return {name: cpu for name, cpu in spent.items() if cpu is not None}


def _cpu_use(
    fleet: Fleet,
    services: dict[str, int],
    before: dict[str, float],
    busy_before: float,
    seconds: float,
    rows: int,
) -> CpuUse:
    spent = {
        name: cpu - before.get(name, 0.0)  # a replica started mid-run: since its start
        for name, cpu in fleet.cpu_seconds().items()
    }
    spent |= {
        name: max(cpu - before[name], 0.0)
        for name, cpu in _services_cpu(services).items()
        if name in before
    }
    busy = machine_busy_seconds() - busy_before
    spent["rest of the machine"] = max(busy - sum(spent.values()), 0.0)
    spent["all"] = busy
    by_role = {
        role: sum(cpu for name, cpu in spent.items() if name.split("#")[0] == role)
        for role in ROLES
    }
    components = {
        **by_role,
        "bulkflow": sum(by_role.values()),
        **{name: cpu for name, cpu in spent.items() if "#" not in name},
    }

    def per_row(cpu: dict[str, float]) -> dict[str, float]:
        return {name: round(value / rows * 1e6, 1) for name, value in cpu.items()}

    return CpuUse(
        cores=os.cpu_count() or 1,
        busy_cores=round(busy / seconds, 2),
        us_per_row=per_row(spent),
        components=per_row(components),
    )


async def _action_of(
    client: httpx.AsyncClient, key: str, uploading: asyncio.Task[None]
) -> tuple[str, str]:
    """The account's action, as soon as the API has created it (mid-upload)."""
    while True:
        listed = await _get(client, "/v1/bulk-actions?limit=1", key)
        if listed["data"]:
            return str(listed["data"][0]["id"]), key
        if uploading.done():
            uploading.result()  # raises what the upload raised
            raise BenchFailed("the upload finished but no action was listed")
        await asyncio.sleep(POLL)


async def _recorded(client: httpx.AsyncClient, ids: list[tuple[str, str]]) -> int:
    stats = [await _get(client, f"/v1/bulk-actions/{i}/stats", key) for i, key in ids]
    return sum(int(s["recorded_rows"]) for s in stats)


async def _get(client: httpx.AsyncClient, path: str, key: str) -> dict[str, Any]:
    response = await client.get(path, headers=bearer(key))
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def _verify(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    workload: Workload,
    keys: list[tuple[str, str]],
    ids: list[str],
) -> None:
    for action_id, (_, expected), (account_id, key) in zip(ids, workload.files, keys, strict=True):
        wanted = {
            "succeeded": expected.unique,
            "failed": expected.invalid,
            "skipped": expected.duplicates,
        }
        state = await _get(client, f"/v1/bulk-actions/{action_id}", key)
        stats = await _get(client, f"/v1/bulk-actions/{action_id}/stats", key)
        stored = await pool.fetchval(sql.postgres("bench_contacts_count"), account_id)
        if state["counts"] != wanted or stats["counts"] != wanted or stored != expected.unique:
            raise BenchFailed(
                f"account {account_id}: expected {wanted} and {expected.unique} contacts; "
                f"Postgres counted {state['counts']}, ClickHouse {stats['counts']}, "
                f"{stored} contacts stored"
            )


async def _latency(client: httpx.AsyncClient, key: str) -> Latency:
    """Submit -> completed for small JSON actions, one after another."""
    seconds = []
    for n in range(LATENCY_ACTIONS):
        rows = [{"email": f"small-{n}-{i}@latency.example"} for i in range(LATENCY_ROWS)]
        started = time.monotonic()
        response = await client.post(
            "/v1/bulk-actions",
            json={"entity": "contact", "action": "upsert", "rows": rows},
            headers=bearer(key),
        )
        response.raise_for_status()
        action_id = response.json()["id"]
        while (status := (await _get(client, f"/v1/bulk-actions/{action_id}", key))["status"]) != (
            "completed"
        ):
            if status in ("failed", "cancelled"):
                raise BenchFailed(f"a {LATENCY_ROWS}-row action ended {status}")
            await asyncio.sleep(0.02)
        seconds.append(time.monotonic() - started)
    cuts = statistics.quantiles(seconds, n=20, method="inclusive")
    return Latency(
        actions=LATENCY_ACTIONS,
        rows_each=LATENCY_ROWS,
        p50_seconds=round(statistics.median(seconds), 3),
        p95_seconds=round(cuts[18], 3),
    )
