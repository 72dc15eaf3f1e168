"""``bulkflow submit`` and ``bulkflow actions``: the producers' client of the HTTP API.

It talks to a running bulkflow only through its API, with
``BULKFLOW_API_URL`` (default http://127.0.0.1:8787) and ``BULKFLOW_API_KEY``.
``--watch`` follows the action's Server-Sent Events (the same change stream
the WebSocket serves) with a progress bar, resuming with ``Last-Event-ID``
if the connection drops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

TERMINAL = ("completed", "failed", "cancelled")
_RECONNECT_PAUSE = 1.0  # seconds before following the events again after a drop
_RECONNECTS = 30  # drops in a row before --watch gives up
EXIT_OK, EXIT_FAILED_ROWS, EXIT_ERROR = 0, 1, 2


class ClientSettings(BaseSettings):
    """Where the API is and the key to use: the client's own two settings."""

    model_config = SettingsConfigDict(env_prefix="BULKFLOW_", extra="ignore", frozen=True)

    api_url: str = "http://127.0.0.1:8787"
    api_key: SecretStr | None = None


class ClientError(Exception):
    """The API refused a request: its error body, for the terminal."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            error = response.json()["error"]
            text = f"{error['code']}: {error['message']}"
            if error.get("details"):
                text += f" {json.dumps(error['details'])}"
        except (ValueError, KeyError, TypeError):
            text = response.text[:500]
        super().__init__(f"HTTP {response.status_code} {text}")


class Client:
    def __init__(self, settings: ClientSettings) -> None:
        if settings.api_key is None:
            raise SystemExit(
                "error: set BULKFLOW_API_KEY (bulkflow accounts create NAME prints one)"
            )
        self._http = httpx.Client(
            base_url=settings.api_url,
            headers={"authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            timeout=httpx.Timeout(60, read=None),
        )

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise ClientError(response)
        return response.json()

    def submit(
        self,
        path: Path,
        *,
        entity: str,
        action: str,
        mapping: str | None = None,
        schedule: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV, streamed from disk."""
        params = {"entity": entity, "action": action}
        if mapping:
            params["mapping"] = mapping
        if schedule:
            params["scheduled_for"] = schedule
        headers = {"content-type": "text/csv"}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        with path.open("rb") as body:
            result: dict[str, Any] = self._json(
                "POST", "/v1/bulk-actions", params=params, content=body, headers=headers
            )
        return result

    def action(self, action_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/bulk-actions/{action_id}")
        return result

    def actions(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._json("GET", "/v1/bulk-actions", params=params)
        return result

    def logs(self, action_id: str, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._json(
            "GET", f"/v1/bulk-actions/{action_id}/logs", params=params
        )
        return result

    def control(self, action_id: str, change: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/bulk-actions/{action_id}/{change}")
        return result

    def failed_rows(self, action_id: str, out: Any, include_skipped: bool) -> None:
        params = {"include": "skipped"} if include_skipped else {}
        url = f"/v1/bulk-actions/{action_id}/failed-rows.csv"
        with self._http.stream("GET", url, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise ClientError(response)
            for block in response.iter_bytes():
                out.write(block)

    def events(self, action_id: str) -> Iterator[dict[str, Any]]:
        """The action's events until a terminal one; reconnects with Last-Event-ID."""
        last, drops = "", 0
        while True:
            headers = {"last-event-id": last} if last else {}
            try:
                with self._http.stream(
                    "GET", f"/v1/bulk-actions/{action_id}/events", headers=headers
                ) as response:
                    if response.status_code == 204:  # the end was seen already
                        return
                    if response.status_code >= 400:
                        response.read()
                        raise ClientError(response)
                    for event_id, data in _sse(response.iter_lines()):
                        last, drops = event_id, 0
                        yield data
                        if data["status"] in TERMINAL:
                            return
            except httpx.TransportError:
                pass
            drops += 1
            if drops > _RECONNECTS:
                raise SystemExit(f"error: lost the event stream of {action_id}")
            time.sleep(_RECONNECT_PAUSE)


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event_id, data = "", ""
    for line in lines:
        if not line:
            if data:
                yield event_id, json.loads(data)
            event_id, data = "", ""
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def watch(client: Client, action_id: str, console: Console) -> dict[str, Any]:
    """A progress bar from the live events (rows/s, ETA, counts); the final event."""
    final: dict[str, Any] = {}
    columns = (
        TextColumn("[bold]{task.fields[status]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} rows/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rows", total=None, status="", rate="-", counts="")
        first: int | None = None
        for event in client.events(action_id):
            done, total = event["progress"]["processed"], event["progress"]["total"]
            if first is None and done == 0:
                started = time.monotonic()
            first = done if first is None else first
            elapsed = time.monotonic() - started
            rate = (done - first) / elapsed if elapsed > 0 and done > first else 0.0
            c = event["counts"]
            progress.update(
                task,
                completed=done,
                total=total,
                status=event["status"],
                rate=f"{rate:,.0f}" if rate else "-",
                counts=f"ok {c['succeeded']:,}  failed {c['failed']:,}  skipped {c['skipped']:,}",
            )
            final = event
    return final


def exit_status(final: dict[str, Any], allow_failed: bool) -> int:
    """0 when the action completed without failed rows (or they were allowed)."""
    if final.get("status") != "completed":
        return EXIT_FAILED_ROWS
    if final["counts"]["failed"] and not allow_failed:
        return EXIT_FAILED_ROWS
    return EXIT_OK


def _print_action(console: Console, action: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    progress, counts = action["progress"], action["counts"]
    for name, value in (
        ("id", action["id"]),
        ("status", action["status"]),
        ("entity / action", f"{action['entity']} / {action['action']}"),
        ("rows", f"{progress['processed']:,} of {action['total_rows'] or '?'}"),
        ("counts", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
        ("rows/s", progress["rows_per_second"]),
        ("created", action["created_at"]),
        ("finished", action["finished_at"]),
        ("error", json.dumps(action["error"]) if action["error"] else None),
    ):
        if value is not None:
            table.add_row(f"[bold]{name}", str(value))
    console.print(table)


def _submit(client: Client, args: argparse.Namespace, console: Console) -> int:
    action = client.submit(
        args.file,
        entity=args.entity,
        action=args.action,
        mapping=args.mapping,
        schedule=args.schedule,
        idempotency_key=args.idempotency_key,
    )
    console.print(f"bulk action {action['id']}: {action['status']}")
    if not args.watch:
        return EXIT_OK
    final = watch(client, action["id"], console)
    _print_action(console, client.action(action["id"]))
    return exit_status(final, args.allow_failed)


def _actions(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.what == "list":
        page = client.actions(status=args.status, limit=args.limit)
        table = Table(
            "id", "status", "entity", "action", "rows", "ok", "failed", "skipped", "created"
        )
        for a in page["data"]:
            c = a["counts"]
            table.add_row(
                a["id"],
                a["status"],
                a["entity"],
                a["action"],
                f"{a['total_rows'] or '?'}",
                f"{c['succeeded']:,}",
                f"{c['failed']:,}",
                f"{c['skipped']:,}",
                a["created_at"][:19],
            )
        console.print(table)
        return EXIT_OK
    if not args.id:
        raise SystemExit(f"error: actions {args.what} needs an action id")
    if args.what == "show":
        _print_action(console, client.action(args.id))
    elif args.what == "logs":
        page = client.logs(args.id, outcome=args.outcome, limit=args.limit)
        for row in page["data"]:
            console.print(json.dumps(row), markup=False, highlight=False, soft_wrap=True)
    elif args.what == "failed-rows":
        if args.out:
            with Path(args.out).open("wb") as out:
                client.failed_rows(args.id, out, args.include_skipped)
        else:
            client.failed_rows(args.id, sys.stdout.buffer, args.include_skipped)
    else:
        _print_action(console, client.control(args.id, args.what))
    return EXIT_OK


def _run(handler: Callable[[Client, argparse.Namespace, Console], int]) -> Any:
    def run(settings: object, args: argparse.Namespace) -> int:
        console = Console(stderr=False)
        client = Client(ClientSettings())
        try:
            return handler(client, args, console)
        except ClientError as exc:
            Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
            return EXIT_ERROR
        except httpx.TransportError as exc:
            Console(stderr=True).print(f"[red]error:[/red] cannot reach the API: {exc}")
            return EXIT_ERROR
        finally:
            client.close()

    return run


def add_commands(commands: Any) -> None:
    """``submit`` and ``actions``, on the ``bulkflow`` parser's subcommands."""
    submit = commands.add_parser(
        "submit", help="upload a CSV as a bulk action (BULKFLOW_API_URL, BULKFLOW_API_KEY)"
    )
    submit.add_argument("file", type=Path)
    submit.add_argument("--entity", required=True)
    submit.add_argument("--action", required=True, choices=["create", "update", "upsert", "delete"])
    submit.add_argument("--mapping", help='JSON: source column -> field, {"E-mail": "email"}')
    submit.add_argument("--schedule", help="ISO 8601 time with an offset to start at")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--watch", action="store_true", help="follow it to the end")
    submit.add_argument(
        "--allow-failed",
        action="store_true",
        help="exit 0 when the action completes with failed rows",
    )
    submit.set_defaults(handler=_run(_submit))

    actions = commands.add_parser("actions", help="list, show and control bulk actions")
    actions.add_argument(
        "what",
        choices=["list", "show", "logs", "failed-rows", "cancel", "pause", "resume"],
    )
    actions.add_argument("id", nargs="?")
    actions.add_argument("--status")
    actions.add_argument("--outcome", choices=["succeeded", "failed", "skipped"])
    actions.add_argument("--limit", type=int)
    actions.add_argument("--out", help="failed-rows: write the CSV here")
    actions.add_argument("--include-skipped", action="store_true")
    actions.set_defaults(handler=_run(_actions))
