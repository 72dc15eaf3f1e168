"""``bulkflow chaos``: break one part of bulkflow during an action, then check every count.

Each scenario runs the real processes (:mod:`ops.bench.fleet`: the API, the sink
and an agents replica, each a ``bulkflow serve --role ...``) on a fresh
database, topic prefix and embedded ClickHouse path (:mod:`ops.bench.isolation`),
uploads the seeded sample contacts (:mod:`ops.sample`, which knows how many
rows succeed, fail and are skipped) as a CSV through the API, and once a third
of the rows are processed kills a process or stops a service, then restores it.
When the action has ended and ClickHouse holds every row it checks the action's
status and counts, the contacts stored and ClickHouse's outcomes (``FINAL``, and
distinct rows of the raw table) against what the generator knows.

The suite stops Postgres, Kafka and Redis, so it runs them as a private set of
its own (:class:`ops.dev.local_services.Supervisor` on free ports under a
temporary state directory), never the developer's or a test session's.

The upload is spread over :data:`UPLOAD_SECONDS` whatever its size, so that the
fault lands while rows are still arriving and being applied.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from clickhouse_connect.driver.exceptions import OperationalError
from pydantic import SecretStr

from bulkflow import sql
from bulkflow.clickhouse import ClickHouse, ClickHouseUnavailable
from bulkflow.clickhouse_front import front_client_url
from bulkflow.constants import CHAOS_SCENARIOS as SCENARIOS
from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from ingest_api.accounts import create_account
from ops.bench.fleet import Fleet, FleetFailed, free_port, free_port_pair
from ops.bench.isolation import isolated_settings, release
from ops.demo import bearer
from ops.dev.local_services import ServiceError, Supervisor
from ops.sample import SampleExpectation, write_contacts_csv

#: Seconds each stopped service stays down unless --outage says otherwise.
OUTAGES = {"postgres": 30.0, "kafka": 20.0, "redis": 20.0}
FAULT_AT = 1 / 3  # of the rows processed, when the fault is injected
UPLOAD_SECONDS = 10.0  # the upload is paced to last about this long, whatever its size
UPLOAD_PIECES = 100  # pieces of the file the paced upload sends
#: Seconds without any change (progress, status, outcomes in ClickHouse) after
#: which a scenario stops waiting and checks what is there.
STALL_PATIENCE = 90.0
#: The contract: an action whose upload was cut off says so within this many seconds.
INTERRUPTED_PATIENCE = 30.0
POLL = 0.25  # seconds between looks
TERMINAL = ("completed", "failed", "cancelled")
#: Log lines worth showing when a scenario fails: errors, and the exception that ends a
#: traceback; ``what`` is the line without its time, to show each kind only once.
_ERROR_LINE = re.compile(r"^[\d-]+ [\d:,]+ (?:ERROR|CRITICAL) (?P<what>.*)$")
_EXCEPTION_LINE = re.compile(r"^(?P<what>[\w.]+(?:Error|Exception)\b.*)$")
_DIGITS = re.compile(r"\d+")  # "attempt 7" and "attempt 8" are one line of evidence


class Unverified(Exception):
    """A scenario could not reach the point where its checks apply."""


@dataclass
class Observed:
    """One action as the API reports it, and its outcomes as ClickHouse holds them."""

    action_id: str
    status: str | None = None
    total_rows: int | None = None
    processed_rows: int | None = None
    pg_counts: dict[str, int] | None = None
    error: dict[str, Any] | None = None
    ch_final_counts: dict[str, int] | None = None
    ch_distinct_rows: int | None = None


@dataclass
class ScenarioResult:
    scenario: str
    rows: int
    seconds: float
    #: From the kill or stop until the part answered again.
    outage_seconds: float
    fault_at_fraction: float | None
    fault_during_upload: bool | None
    status: str | None
    pg_counts: dict[str, int] | None
    contacts: int | None
    ch_final_counts: dict[str, int] | None
    ch_distinct_rows: int | None
    verified: bool
    reason: str | None
    #: The api scenario: the action whose upload the kill cut off.
    interrupted: Observed | None = None
    log_excerpt: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Upload:
    """How a CSV upload ended: the API's answer, or why there was none."""

    status_code: int | None
    body: dict[str, Any] | None
    error: str | None = None

    def describe(self) -> str:
        if self.status_code is None:
            return f"no answer ({self.error})"
        return f"{self.status_code} {orjson.dumps(self.body).decode()[:300]}"


@dataclass
class Run:
    """One scenario's processes, account and expectations."""

    name: str
    settings: Settings
    supervisor: Supervisor
    fleet: Fleet
    client: httpx.AsyncClient
    account_id: str
    key: str
    csv: Path
    expected: SampleExpectation
    outage: float

    @property
    def expected_counts(self) -> dict[str, int]:
        e = self.expected
        return {"succeeded": e.unique, "failed": e.invalid, "skipped": e.duplicates}


async def run_chaos(
    settings: Settings,
    *,
    rows: int,
    scenarios: list[str],
    outage: float | None = None,
    out: Path | None = None,
) -> list[ScenarioResult]:
    """Every scenario in turn against one private set of services; the table printed."""
    work = Path(tempfile.mkdtemp(prefix="bulkflow-chaos-"))
    results = []
    async with private_services(settings) as (services, supervisor):
        for name in scenarios:
            seconds = outage if outage is not None else OUTAGES.get(name, 0.0)
            print(f"chaos: {name} with {rows:,} rows", flush=True)
            result = await run_scenario(services, supervisor, name, rows, seconds, work / name)
            print(f"chaos: {name} {'verified' if result.verified else 'NOT verified'}", flush=True)
            results.append(result)
    print(table(results))
    if out is not None:
        body = orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(out.write_bytes, body)
    if all(r.verified for r in results):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"the processes' logs are kept under {work}")
    return results


@asynccontextmanager
async def private_services(settings: Settings) -> AsyncIterator[tuple[Settings, Supervisor]]:
    """Postgres, Kafka and Redis of this run's own, on free ports; stopped and removed after."""
    state_dir = _reachable_temp_dir()
    kafka = free_port_pair()  # Kafka's controller listens on the port after the broker's
    services = settings.model_copy(
        update={
            "state_dir": state_dir,
            "postgres_dsn": SecretStr(f"postgresql://bulkflow@127.0.0.1:{free_port()}/bulkflow"),
            "redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0"),
            "kafka_bootstrap": f"127.0.0.1:{kafka}",
        }
    )
    supervisor = Supervisor(services)
    try:
        await asyncio.to_thread(supervisor.up)
        yield services, supervisor
    finally:
        await asyncio.to_thread(supervisor.down)
        await asyncio.to_thread(shutil.rmtree, state_dir, ignore_errors=True)


def _reachable_temp_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="bulkflow-chaos-services-"))
    # Postgres runs as the postgres user when this is root: let it reach its data
    # here, rather than in a folder under /var/tmp that nothing would remove.
    path.chmod(0o755)
    return path


async def run_scenario(
    services: Settings, supervisor: Supervisor, name: str, rows: int, outage: float, work: Path
) -> ScenarioResult:
    """One scenario from a fresh database to its checked result."""
    if name not in SCENARIOS:
        raise ValueError(f"no chaos scenario {name!r}; there are {', '.join(SCENARIOS)}")
    csv = work / "contacts.csv"
    expected = write_contacts_csv(csv, rows, seed=11, domain=f"{name}.chaos.example")
    settings = await isolated_settings(services, work, "chaos")
    started = time.monotonic()
    fleet: Fleet | None = None
    try:
        async with (
            Fleet.running(settings, work, agents=1) as fleet,
            httpx.AsyncClient(base_url=settings.api_url, timeout=10) as client,
        ):
            async with connect_pool(settings, size=1) as pool:
                account = await create_account(pool, f"chaos-{name}")
            run = Run(
                name=name,
                settings=settings,
                supervisor=supervisor,
                fleet=fleet,
                client=client,
                account_id=account.id,
                key=account.api_key,
                csv=csv,
                expected=expected,
                outage=outage,
            )
            result = await (_api_scenario(run) if name == "api" else _fault_scenario(run))
    except (Unverified, FleetFailed, ServiceError) as exc:
        result = _broken(name, rows, str(exc))
    finally:
        await release(services, settings)
    result.seconds = round(time.monotonic() - started, 1)
    if not result.verified and fleet is not None:
        result.log_excerpt = _log_excerpt(fleet)
    return result


def _broken(name: str, rows: int, reason: str) -> ScenarioResult:
    """A scenario that never got as far as its checks."""
    return ScenarioResult(
        scenario=name,
        rows=rows,
        seconds=0.0,
        outage_seconds=0.0,
        fault_at_fraction=None,
        fault_during_upload=None,
        status=None,
        pg_counts=None,
        contacts=None,
        ch_final_counts=None,
        ch_distinct_rows=None,
        verified=False,
        reason=reason,
    )


# -- the scenarios ----------------------------------------------------------------------


async def _fault_scenario(run: Run) -> ScenarioResult:
    """Upload, inject the fault a third of the way, restore; every count exact."""
    uploading = asyncio.create_task(upload(run, UPLOAD_SECONDS))
    try:
        action_id = await _action_created(run, uploading)
        at = await _until_processed(run, action_id, uploading)
        during_upload = not uploading.done()
        outage = await _inject(run)
        seen = await _until_settled(run, action_id, uploading)
    finally:
        uploading.cancel()
    contacts = await _contacts(run)
    problems = _fault_timing(at, during_upload=during_upload, needs_upload=False)
    if not uploading.done() or uploading.cancelled():
        problems.append("the upload was still streaming when the scenario gave up")
    elif (uploaded := uploading.result()).status_code != 202:
        problems.append(f"the upload was answered {uploaded.describe()}")
    problems += _exact(run, seen, contacts)
    return _result(run, seen, contacts, outage, at, during_upload, problems)


async def _api_scenario(run: Run) -> ScenarioResult:
    """SIGKILL the API mid-upload: the action fails consistently; a retry uploads again."""
    key = f"chaos-{uuid.uuid4().hex}"
    uploading = asyncio.create_task(upload(run, UPLOAD_SECONDS, idempotency_key=key))
    try:
        action_id = await _action_created(run, uploading)
        at = await _until_processed(run, action_id, uploading)
        during_upload = not uploading.done()
        outage = await _kill_and_restart(run, "api")
        await uploading  # cut off (or, if it had ended, its answer)
    finally:
        uploading.cancel()
    problems = _fault_timing(at, during_upload=during_upload, needs_upload=True)
    first = await _interrupted(run, action_id, problems)
    retry = await upload(run, 0.0, idempotency_key=key)
    retried = _retried_action(retry, action_id, problems)
    seen = await _until_settled(run, retried, None) if retried else first
    contacts = await _contacts(run)
    if retried:
        problems += _exact(run, seen, contacts)
    result = _result(run, seen, contacts, outage, at, during_upload, problems)
    result.interrupted = first
    return result


async def _interrupted(run: Run, action_id: str, problems: list[str]) -> Observed:
    """The cut-off action: marked upload_interrupted in time, then consistent once settled."""
    started = time.monotonic()
    seen = await _observe(run, action_id)
    while not _cut_off(seen) and time.monotonic() - started < INTERRUPTED_PATIENCE:
        await asyncio.sleep(POLL)
        seen = await _observe(run, action_id)
    if not _cut_off(seen):
        problems.append(
            f"the cut-off action showed no upload_interrupted error within "
            f"{INTERRUPTED_PATIENCE:.0f} s of the API's restart: status {seen.status}, "
            f"error {seen.error}, total_rows {seen.total_rows}, processed {seen.processed_rows}"
        )
        return await _with_clickhouse(run, seen)
    seen = await _until_settled(run, action_id, None)
    problems += _consistent(seen)
    return seen


def _cut_off(seen: Observed) -> bool:
    return (seen.error or {}).get("code") == "upload_interrupted"


def _retried_action(retry: Upload, first_id: str, problems: list[str]) -> str | None:
    """The new action of the retried upload, or None (and why) if there is none."""
    if retry.status_code != 202 or retry.body is None:
        problems.append(f"the retry with the same Idempotency-Key was answered {retry.describe()}")
        return None
    if str(retry.body["id"]) == first_id:
        problems.append(
            "the retry with the same Idempotency-Key was answered with the cut-off action "
            f"({first_id}, status {retry.body['status']}): the key was not released"
        )
        return None
    return str(retry.body["id"])


# -- faults ------------------------------------------------------------------------------


async def _inject(run: Run) -> float:
    """The scenario's fault, restored; seconds until the broken part answered again."""
    if run.name in ("agents", "sink"):
        return await _kill_and_restart(run, run.name)
    return await _stop_and_start(run.supervisor, run.name, run.outage)


async def _kill_and_restart(run: Run, role: str) -> float:
    victim = next(m for m in run.fleet.members if m.name.startswith(f"{role}#"))
    print(f"chaos: SIGKILL {victim.name}, starting another", flush=True)
    started = time.monotonic()
    run.fleet.kill(victim)
    run.fleet.spawn(role, [role])
    await run.fleet.until_ready()
    return round(time.monotonic() - started, 1)


async def _stop_and_start(supervisor: Supervisor, service: str, seconds: float) -> float:
    print(f"chaos: stopping {service} for {seconds:g} s", flush=True)
    started = time.monotonic()
    await asyncio.to_thread(supervisor.stop, service)
    try:
        await asyncio.sleep(seconds)  # the outage itself: the one fixed wait
    finally:
        await asyncio.to_thread(supervisor.start, service)
    return round(time.monotonic() - started, 1)


# -- the upload ---------------------------------------------------------------------------


async def upload(run: Run, seconds: float, *, idempotency_key: str | None = None) -> Upload:
    """The CSV through the API, spread over ``seconds`` (0: as fast as it goes)."""
    headers = {"content-type": "text/csv", **bearer(run.key)}
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    try:
        response = await run.client.post(
            "/v1/bulk-actions",
            params={"entity": "contact", "action": "upsert"},
            content=_paced(run.csv, seconds),
            headers=headers,
            timeout=None,
        )
    except httpx.HTTPError as exc:
        return Upload(None, None, f"{type(exc).__name__}: {exc}")
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"text": response.text[:300]}
    return Upload(response.status_code, body)


async def _paced(path: Path, seconds: float) -> AsyncIterator[bytes]:
    data = await asyncio.to_thread(path.read_bytes)
    size = -(-len(data) // UPLOAD_PIECES)
    for start in range(0, len(data), size):
        yield data[start : start + size]
        if seconds:
            await asyncio.sleep(seconds / UPLOAD_PIECES)  # pacing the client, not waiting


# -- waiting on conditions -----------------------------------------------------------------


async def _action_created(run: Run, uploading: asyncio.Task[Upload]) -> str:
    """The account's action, as soon as the API has created it (mid-upload)."""
    deadline = time.monotonic() + STALL_PATIENCE
    while time.monotonic() < deadline:
        run.fleet.check_alive()
        listed = await _get(run, "/v1/bulk-actions?limit=1")
        if listed and listed["data"]:
            return str(listed["data"][0]["id"])
        if uploading.done():
            raise Unverified(f"no action was created; the upload: {uploading.result().describe()}")
        await asyncio.sleep(POLL)
    raise Unverified(f"no action was created within {STALL_PATIENCE:.0f} s")


async def _until_processed(run: Run, action_id: str, uploading: asyncio.Task[Upload]) -> float:
    """Wait until FAULT_AT of the rows are processed (or the action ended); the share seen."""
    target = FAULT_AT * run.expected.rows
    watch = _Stall()
    while True:
        run.fleet.check_alive()
        seen = await _observe(run, action_id)
        processed = seen.processed_rows or 0
        if processed >= target or seen.status in TERMINAL:
            return round(processed / run.expected.rows, 3)
        if uploading.done() and uploading.result().status_code != 202:
            raise Unverified(f"the upload was answered {uploading.result().describe()}")
        watch.check(seen, f"{FAULT_AT:.0%} of the rows processed")
        await asyncio.sleep(POLL)


async def _until_settled(
    run: Run, action_id: str, uploading: asyncio.Task[Upload] | None
) -> Observed:
    """The action ended, its upload too, and ClickHouse holds an outcome per row.

    Gives up after STALL_PATIENCE seconds in which nothing changed, and returns
    what it saw then: the checks say what is wrong.
    """
    watch = _Stall()
    while True:
        run.fleet.check_alive()
        seen = await _observe(run, action_id)
        ended = seen.status in TERMINAL and (uploading is None or uploading.done())
        if ended and (total := seen.total_rows) is not None:
            seen = await _with_clickhouse(run, seen)
            if (seen.ch_distinct_rows or 0) >= total:
                return seen
        if watch.stalled(seen):
            return await _with_clickhouse(run, seen)
        await asyncio.sleep(POLL)


class _Stall:
    """Notices when nothing about an action has changed for STALL_PATIENCE seconds."""

    def __init__(self) -> None:
        self._last: tuple[Any, ...] = ()
        self._since = time.monotonic()

    def stalled(self, seen: Observed) -> bool:
        state = (seen.status, seen.processed_rows, seen.total_rows, seen.ch_distinct_rows)
        if state != self._last:
            self._last, self._since = state, time.monotonic()
        return time.monotonic() - self._since > STALL_PATIENCE

    def check(self, seen: Observed, waiting_for: str) -> None:
        if self.stalled(seen):
            raise Unverified(
                f"no change for {STALL_PATIENCE:.0f} s waiting for {waiting_for}: "
                f"status {seen.status}, processed {seen.processed_rows}"
            )


# -- looking -----------------------------------------------------------------------------


async def _get(run: Run, path: str) -> dict[str, Any] | None:
    """A GET through the API; None while it is down or answers with an error."""
    try:
        response = await run.client.get(path, headers=bearer(run.key))
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


async def _observe(run: Run, action_id: str) -> Observed:
    action = await _get(run, f"/v1/bulk-actions/{action_id}")
    if action is None:
        return Observed(action_id)
    return Observed(
        action_id,
        status=action["status"],
        total_rows=action["total_rows"],
        processed_rows=action["progress"]["processed"],
        pg_counts=action["counts"],
        error=action["error"],
    )


async def _with_clickhouse(run: Run, seen: Observed) -> Observed:
    """``seen`` with ClickHouse's counts, read through the sink's front (if it answers)."""
    params = {"account_id": run.account_id, "action_id": seen.action_id}
    try:
        async with ClickHouse.open(front_client_url(run.settings)) as clickhouse:
            # Rows first: the counts read after them are at least as recent,
            # so once every row is there, the counts are of every row.
            [(distinct,)] = await clickhouse.rows("outcome_rows_raw", params)
            final = await clickhouse.rows("outcome_counts_final", params)
    except (ClickHouseUnavailable, OperationalError):  # the sink (and its front) restarting
        return seen
    counts = {"succeeded": 0, "failed": 0, "skipped": 0} | {o: int(n) for o, n in final}
    seen.ch_final_counts, seen.ch_distinct_rows = counts, int(distinct)
    return seen


async def _contacts(run: Run) -> int | None:
    """The contacts stored for the scenario's account, straight from Postgres."""
    try:
        conn = await asyncpg.connect(run.settings.postgres_dsn.get_secret_value())
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        count: int = await conn.fetchval(sql.postgres("bench_contacts_count"), run.account_id)
        return count
    finally:
        await conn.close()


# -- checks ------------------------------------------------------------------------------


def _fault_timing(at: float, *, during_upload: bool, needs_upload: bool) -> list[str]:
    if at >= 1:
        return ["the fault came after every row was processed: nothing was tested"]
    if needs_upload and not during_upload:
        return ["the kill came after the upload had ended, not during it"]
    return []


def _exact(run: Run, seen: Observed, contacts: int | None) -> list[str]:
    """The whole file applied exactly once: what the generator knows, everywhere."""
    want, rows = run.expected_counts, run.expected.rows
    checks = [
        ("status", seen.status, "completed"),
        ("Postgres counts", seen.pg_counts, want),
        ("total_rows", seen.total_rows, rows),
        ("processed_rows", seen.processed_rows, rows),
        ("contacts stored", contacts, run.expected.unique),
        ("ClickHouse FINAL counts", seen.ch_final_counts, want),
        ("ClickHouse distinct rows", seen.ch_distinct_rows, rows),
    ]
    return [f"{what} {got} (expected {wanted})" for what, got, wanted in checks if got != wanted]


def _consistent(seen: Observed) -> list[str]:
    """An action cut short: failed, and Postgres and ClickHouse agree on the rows it has."""
    problems = []
    if seen.status != "failed":
        problems.append(f"the cut-off action ended {seen.status}, not failed")
    total, processed, counts = seen.total_rows, seen.processed_rows, seen.pg_counts
    if total is None or total != processed or counts is None or sum(counts.values()) != total:
        problems.append(
            f"the cut-off action: total_rows {total}, processed_rows {processed}, counts {counts}"
        )
    if seen.ch_final_counts != counts or seen.ch_distinct_rows != total:
        problems.append(
            f"the cut-off action: ClickHouse FINAL {seen.ch_final_counts}, "
            f"{seen.ch_distinct_rows} distinct rows; Postgres {counts}, total_rows {total}"
        )
    return problems


def _result(
    run: Run,
    seen: Observed,
    contacts: int | None,
    outage: float,
    at: float,
    during_upload: bool,
    problems: list[str],
) -> ScenarioResult:
    return ScenarioResult(
        scenario=run.name,
        rows=run.expected.rows,
        seconds=0.0,
        outage_seconds=outage,
        fault_at_fraction=at,
        fault_during_upload=during_upload,
        status=seen.status,
        pg_counts=seen.pg_counts,
        contacts=contacts,
        ch_final_counts=seen.ch_final_counts,
        ch_distinct_rows=seen.ch_distinct_rows,
        verified=not problems,
        reason="; ".join(problems) or None,
    )


def _log_excerpt(fleet: Fleet, limit: int = 8) -> list[str]:
    """Each process's first distinct error lines and exceptions, as evidence."""
    excerpt = []
    for member in [*fleet.retired, *fleet.members]:
        try:
            lines = member.log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        seen: dict[str, str] = {}
        for line in lines:
            if match := _ERROR_LINE.match(line) or _EXCEPTION_LINE.match(line):
                seen.setdefault(_DIGITS.sub("N", match["what"])[:300], line[:400])
        excerpt += [f"{member.name}: {line}" for line in list(seen.values())[:limit]]
    return excerpt


# -- the report ---------------------------------------------------------------------------

_COLUMNS = (
    "scenario",
    "rows",
    "seconds",
    "outage s",
    "status",
    "PG s/f/sk",
    "contacts",
    "CH FINAL s/f/sk",
    "CH rows",
    "verified",
)


def table(results: list[ScenarioResult]) -> str:
    """The results as a plain-text table, and why each unverified one is not."""
    cells = [_COLUMNS, *(_cells(r) for r in results)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.reason:
            lines.append(f"{r.scenario}: {r.reason}")
    return "\n".join(lines)


def _cells(r: ScenarioResult) -> tuple[str, ...]:
    return (
        r.scenario,
        f"{r.rows:,}",
        f"{r.seconds:g}",
        f"{r.outage_seconds:g}",
        r.status or "-",
        _triple(r.pg_counts),
        "-" if r.contacts is None else f"{r.contacts:,}",
        _triple(r.ch_final_counts),
        "-" if r.ch_distinct_rows is None else f"{r.ch_distinct_rows:,}",
        "yes" if r.verified else "NO",
    )


def _triple(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "-"
    return "/".join(f"{counts.get(k, 0):,}" for k in ("succeeded", "failed", "skipped"))
