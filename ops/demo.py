"""``bulkflow demo``: submit sample contacts to a running bulkflow and watch it work."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console

from bulkflow.database import connect_pool
from bulkflow.settings import Settings
from ingest_api.accounts import create_account, set_rows_per_minute
from ops.client import Client, ClientSettings, watch
from ops.sample import SampleExpectation, write_contacts_csv

_POLL = 0.5  # seconds between progress requests
_UPLOAD_BLOCK = 256 * 1024  # bytes per upload write
_STATS_PATIENCE = 120.0  # seconds to wait for the sink after completion
_STALL_PATIENCE = 180.0  # seconds without progress before the demo gives up
DEMO_ROWS_PER_MINUTE = 10_000_000  # the demo account's row allowance


async def file_blocks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := await asyncio.to_thread(source.read, _UPLOAD_BLOCK):
            yield block


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def upload_csv(
    client: httpx.AsyncClient, path: Path, key: str, **params: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/bulk-actions",
        params={"entity": "contact", "action": "upsert", **params},
        content=file_blocks(path),
        headers={"content-type": "text/csv", **bearer(key)},
        timeout=None,
    )
    if response.status_code != 202:
        raise RuntimeError(f"upload rejected: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


async def wait_until_done(
    client: httpx.AsyncClient,
    action_id: str,
    key: str,
    *,
    started: float | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Poll until the action ends; ``started`` (monotonic) is when its upload began."""
    started = time.monotonic() if started is None else started
    printed = 0.0
    last_processed, last_change = -1, time.monotonic()
    while True:
        response = await client.get(f"/v1/bulk-actions/{action_id}", headers=bearer(key))
        response.raise_for_status()
        action: dict[str, Any] = response.json()
        if action["progress"]["processed"] != last_processed:
            last_processed, last_change = action["progress"]["processed"], time.monotonic()
        elif time.monotonic() - last_change > _STALL_PATIENCE:
            raise RuntimeError(
                f"no progress for {_STALL_PATIENCE:.0f}s at {last_processed:,} rows; "
                "see the server log (.local/log/bulkflow.log)"
            )
        finished = action["status"] in ("completed", "failed")
        if show and (sys.stderr.isatty() or finished or time.monotonic() - printed >= 5):
            _progress(action, time.monotonic() - started)
            printed = time.monotonic()
        if finished:
            if show:
                print(file=sys.stderr)
            return action
        await asyncio.sleep(_POLL)


async def wait_for_stats(
    client: httpx.AsyncClient, action_id: str, key: str, total: int
) -> dict[str, Any]:
    """Outcomes reach ClickHouse through the sink shortly after Postgres counts them."""
    deadline = time.monotonic() + _STATS_PATIENCE
    while True:
        response = await client.get(f"/v1/bulk-actions/{action_id}/stats", headers=bearer(key))
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        if stats["recorded_rows"] >= total or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(_POLL)


def _progress(action: dict[str, Any], elapsed: float) -> None:
    processed = action["progress"]["processed"]
    total = action["total_rows"]
    width = 30
    done = int(width * processed / total) if total else 0
    rate = processed / elapsed if elapsed > 0 else 0
    line = (
        f"[{'#' * done}{'.' * (width - done)}] {processed:>9,}/{total or '?':>9,} rows"
        f"  {rate:>8,.0f} rows/s  {action['status']}"
    )
    if sys.stderr.isatty():  # redraw in place; elsewhere (CI, logs) one line each time
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


async def run_demo(settings: Settings, *, rows: int, account: str) -> int:
    """Create an account named ``account`` (each run a new one), then upload and watch."""
    async with connect_pool(settings, size=1) as pool:
        created = await create_account(pool, account)
        # The demo shows throughput: its account is not held to the default row limit.
        await set_rows_per_minute(pool, created.id, DEMO_ROWS_PER_MINUTE)
        key = created.api_key
    print(f"account {created.id}: row limit raised to {DEMO_ROWS_PER_MINUTE:,}/min for the demo")
    path = settings.state_dir / "demo" / f"contacts-{rows}.csv"
    expected = write_contacts_csv(path, rows)
    print(
        f"generated {rows:,} contacts in {path} "
        f"({expected.duplicates:,} in-file duplicates, {expected.invalid:,} invalid emails)"
    )
    # What `bulkflow submit FILE --entity contact --action upsert --watch` runs.
    api = Client(ClientSettings(api_url=settings.api_url, api_key=SecretStr(key)))
    try:
        started = time.monotonic()
        action = await asyncio.to_thread(api.submit, path, entity="contact", action="upsert")
        print(f"uploaded in {time.monotonic() - started:.1f}s: bulk action {action['id']}")
        await asyncio.to_thread(watch, api, action["id"], Console(stderr=True))
        elapsed = time.monotonic() - started
    finally:
        api.close()
    async with httpx.AsyncClient(base_url=settings.api_url) as client:
        final = await wait_until_done(client, action["id"], key, show=False)
        stats = await wait_for_stats(client, action["id"], key, final["total_rows"])
    return _report(final, stats, expected, elapsed)


def _report(
    final: dict[str, Any], stats: dict[str, Any], expected: SampleExpectation, elapsed: float
) -> int:
    counts, recorded = final["counts"], stats["counts"]
    print(
        f"status: {final['status']} in {elapsed:.1f}s ({final['total_rows'] / elapsed:,.0f} rows/s)"
    )
    print(f"postgres counts:   {counts}")
    print(f"clickhouse counts: {recorded}  operations: {stats['operations']}")
    print(f"reasons: {stats['reasons']}")
    wanted = {
        "succeeded": expected.unique,
        "failed": expected.invalid,
        "skipped": expected.duplicates,
    }
    ok = final["status"] == "completed" and counts == wanted and recorded == wanted
    print("counts match the generated sample" if ok else f"MISMATCH: expected {wanted}")
    return 0 if ok else 1
