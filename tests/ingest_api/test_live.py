"""Live progress from the one change stream: WebSocket and SSE subscribers, on the real server."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ops.sample import write_contacts_csv
from tests.support import PATIENCE, Tenant, new_tenant, submit_json, wait_for_status

pytestmark = pytest.mark.anyio

ROWS = 100_000
WEBSOCKETS = 100
STREAMS = 100  # SSE
#: The API process may grow while it serves 200 subscribers and applies
#: 100,000 rows (it runs the agents and the sink too): far less than this.
MAX_GROWTH_MB = 300


def _ws_url(server: str) -> str:
    return server.replace("http://", "ws://") + "/v1/live"


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a text/event-stream response, as dicts of their fields."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


async def _socket_events(socket: ClientConnection, action_id: str) -> list[dict[str, Any]]:
    """Subscribe, then collect actionUpdate events until a terminal one."""
    await socket.send(orjson.dumps({"type": "subscribe", "action_id": action_id}).decode())
    events = []
    async for raw in socket:
        message = orjson.loads(raw)
        if message["type"] == "actionUpdate":
            events.append(message["action"])
            if message["action"]["status"] in ("completed", "failed", "cancelled"):
                return events
        elif message["type"] == "error":
            raise AssertionError(message)
    raise AssertionError("the socket closed before the end")


async def _stream_events(
    client: httpx.AsyncClient, action_id: str, tenant: Tenant, ready: asyncio.Event
) -> list[dict[str, Any]]:
    events = []
    async with client.stream(
        "GET", f"/v1/bulk-actions/{action_id}/events", headers=tenant.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        ready.set()
        async for event in _sse_events(response):
            data = orjson.loads(event["data"])
            assert int(event["id"]) == data["event_id"]
            events.append(data)
    return events


def _server_pid() -> int:
    """The session server: this process's child running ``ops.cli serve``."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == me and b"ops.cli\0serve" in cmdline:
            return int(entry.name)
    raise AssertionError("no session server among this process's children")


def _memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def _upload(server: str, path: Path, tenant: Tenant, **params: str) -> dict[str, Any]:
    async def blocks() -> AsyncIterator[bytes]:
        with path.open("rb") as source:
            while block := source.read(256 * 1024):
                yield block

    async with httpx.AsyncClient(base_url=server, timeout=None) as client:
        response = await client.post(
            "/v1/bulk-actions",
            params={"entity": "contact", "action": "upsert", **params},
            content=blocks(),
            headers={"content-type": "text/csv", **tenant.headers},
        )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_200_subscribers_see_every_step_to_the_exact_end(
    server: str, api: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner, stranger = await new_tenant(pool), await new_tenant(pool)
    expected = write_contacts_csv(tmp_path / "contacts.csv", ROWS)
    # Scheduled far ahead, so every subscriber is in place before the first row.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    action = await _upload(server, tmp_path / "contacts.csv", owner, scheduled_for=later)
    action_id = action["id"]
    assert action["status"] == "scheduled"
    pid = _server_pid()
    before = _memory_mb(pid)

    sockets = [
        await connect(_ws_url(server), additional_headers=owner.headers) for _ in range(WEBSOCKETS)
    ]
    # Another account's subscriber: refused, and then hears nothing.
    outsider = await connect(_ws_url(server))
    await outsider.send(orjson.dumps({"type": "auth", "api_key": stranger.key}).decode())
    assert orjson.loads(await outsider.recv())["type"] == "ready"
    await outsider.send(orjson.dumps({"type": "subscribe", "action_id": action_id}).decode())
    refused = orjson.loads(await outsider.recv())
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "not_found"
    stranger_sse = await api.get(f"/v1/bulk-actions/{action_id}/events", headers=stranger.headers)
    assert stranger_sse.status_code == 404

    peak = {"rss": before["VmRSS"]}
    done = asyncio.Event()

    async def sample_memory() -> None:
        while not done.is_set():
            peak["rss"] = max(peak["rss"], _memory_mb(pid)["VmRSS"])
            await asyncio.sleep(0.2)

    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(base_url=server, timeout=PATIENCE, limits=limits) as client:
        ready = [asyncio.Event() for _ in range(STREAMS)]
        socket_tasks = [asyncio.create_task(_socket_events(s, action_id)) for s in sockets]
        stream_tasks = [
            asyncio.create_task(_stream_events(client, action_id, owner, r)) for r in ready
        ]
        sampler = asyncio.create_task(sample_memory())
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*(r.wait() for r in ready))
        started = time.monotonic()
        moved = await api.patch(
            f"/v1/bulk-actions/{action_id}",
            json={"scheduled_for": datetime.now(UTC).isoformat()},
            headers=owner.headers,
        )
        assert moved.status_code == 200, moved.text
        async with asyncio.timeout(PATIENCE * 2):
            results = await asyncio.gather(*socket_tasks, *stream_tasks)
        elapsed = time.monotonic() - started
        done.set()
        await sampler

    wanted = {
        "succeeded": expected.unique,
        "failed": expected.invalid,
        "skipped": expected.duplicates,
    }
    for events in results:
        final = events[-1]
        assert final["status"] == "completed"
        assert final["counts"] == wanted
        assert final["progress"] == {"processed": ROWS, "total": ROWS, "percent": 100.0}
        ids = [e["event_id"] for e in events]
        assert ids == sorted(set(ids)), "events in order, none twice"
    # The outsider got nothing more: a ping's pong is the next thing it hears.
    await outsider.send(orjson.dumps({"type": "ping"}).decode())
    assert orjson.loads(await outsider.recv()) == {"type": "pong"}
    for socket in [*sockets, outsider]:
        await socket.close()

    after = _memory_mb(pid)
    steps = sorted(len(events) for events in results)
    print(
        f"\nlive: {WEBSOCKETS} WebSocket + {STREAMS} SSE subscribers, {ROWS:,} rows, "
        f"{elapsed:.1f}s from start to the last final event; events per subscriber "
        f"min {steps[0]} median {steps[len(steps) // 2]} max {steps[-1]}; server RSS "
        f"{before['VmRSS']:.0f} MB before, peak {peak['rss']:.0f} MB, {after['VmRSS']:.0f} MB "
        f"after (VmHWM {after['VmHWM']:.0f} MB)"
    )
    assert peak["rss"] - before["VmRSS"] < MAX_GROWTH_MB
    assert steps[0] >= 2, "at least the scheduled state and the end"


async def test_sse_resumes_from_last_event_id(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    tenant = await new_tenant(pool)
    action = await submit_json(api, tenant, [{"email": f"r{i}@example.com"} for i in range(3)])
    done = await wait_for_status(api, action["id"], tenant)
    url = f"/v1/bulk-actions/{action['id']}/events"
    async with api.stream("GET", url, headers=tenant.headers) as response:
        events = [e async for e in _sse_events(response)]
    assert len(events) == 1, "a finished action: its final state, then the end"
    final = orjson.loads(events[0]["data"])
    assert final["status"] == done["status"] == "completed"
    last = events[0]["id"]
    headers = {**tenant.headers, "Last-Event-ID": str(int(last) - 1)}
    async with api.stream("GET", url, headers=headers) as response:
        resumed = [e async for e in _sse_events(response)]
    assert [e["id"] for e in resumed] == [last]
    seen_all = await api.get(url, headers={**tenant.headers, "Last-Event-ID": last})
    assert seen_all.status_code == 204
    bad = await api.get(url, headers={**tenant.headers, "Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_failed"


async def test_a_socket_without_a_valid_key_is_closed(server: str) -> None:
    async with connect(_ws_url(server)) as socket:
        await socket.send(orjson.dumps({"type": "auth", "api_key": "nope"}).decode())
        message = orjson.loads(await socket.recv())
        assert message["error"]["code"] == "unauthorized"
        await socket.wait_closed()
        assert socket.close_code == 4401
