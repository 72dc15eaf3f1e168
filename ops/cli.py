"""The ``bulkflow`` command line: services, migrations, serving, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bulkflow import constants, logs
from bulkflow.settings import Settings


def _services(settings: Settings, args: argparse.Namespace) -> int:
    from ops.dev.local_services import ServiceError, Supervisor

    supervisor = Supervisor(settings)
    try:
        statuses = {"up": supervisor.up, "down": supervisor.down, "status": supervisor.status}[
            args.action
        ]()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'service':<10} {'port':>6} {'pid':>8}  state    log")
    for s in statuses:
        state = "ready" if s.ready else ("starting" if s.pid else "stopped")
        print(f"{s.name:<10} {s.port:>6} {s.pid or '-':>8}  {state:<8} {s.log}")
    return 0 if args.action != "up" or all(s.ready for s in statuses) else 1


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bulkflow.migrations import migrate

    for line in asyncio.run(migrate(settings, clickhouse=not args.postgres_only)):
        print(line)
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bulkflow.clickhouse import ClickHouseUnavailable
    from ops.server import serve

    roles = tuple(args.role) if args.role else ("api", "agents", "sink")
    try:
        asyncio.run(serve(settings, roles))
    except ClickHouseUnavailable as exc:  # at startup: what to start, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    from bulkflow.database import connect_pool
    from ingest_api.accounts import (
        create_account,
        list_accounts,
        set_rows_per_minute,
        set_webhook_secret,
    )

    async def run() -> None:
        async with connect_pool(settings, size=1) as pool:
            if args.action == "limit":
                rows = None if args.rows in (None, "default") else int(args.rows)
                if not await set_rows_per_minute(pool, args.name, rows):
                    raise SystemExit(f"error: no account {args.name!r}")
                print(f"{args.name}: {rows or 'default'} rows per minute")
            elif args.action == "webhook-secret":
                secret = await set_webhook_secret(pool, args.name)
                if secret is None:
                    raise SystemExit(f"error: no account {args.name!r}")
                print(f"webhook secret of {args.name} (shown once; the old one stops signing):")
                print(secret)
            elif args.action == "create":
                account = await create_account(pool, args.name)
                print(f"account {account.id} ({account.name})")
                print(f"API key (shown once, keep it secret): {account.api_key}")
            else:
                for row in await list_accounts(pool):
                    print(
                        f"{row['id']}  {row['name']}  keys={row['active_keys']}  "
                        f"rows/min={row['rows_per_minute'] or 'default'}  "
                        f"created={row['created_at']:%Y-%m-%d %H:%M}"
                    )

    if args.action in ("create", "limit", "webhook-secret") and not args.name:
        print(
            f"error: accounts {args.action} needs a NAME (create) or an ACCOUNT",
            file=sys.stderr,
        )
        return 2
    positive = str(args.rows).isdigit() and int(args.rows) > 0
    if args.action == "limit" and not (args.rows == "default" or positive):
        print("error: accounts limit ACCOUNT N needs a positive N or 'default'", file=sys.stderr)
        return 2
    asyncio.run(run())
    return 0


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from bulkflow.database import connect_pool
    from stream_agents import dead_letters

    async def run() -> None:
        if args.action == "list":
            letters = await dead_letters.list_pending(settings)
            for letter in letters:
                print(letter.describe())
            print(f"{len(letters)} dead letters pending")
        else:
            async with connect_pool(settings, size=2) as pool:
                done = await dead_letters.replay(settings, pool)
            for letter in done.undecodable:
                print(f"not replayable: {letter.describe()}")
            print(
                f"replayed {done.replayed} chunks; {done.applied_meanwhile} had been applied "
                f"meanwhile; {len(done.undecodable)} undecodable messages not replayable"
            )

    asyncio.run(run())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from ops.bench.bench import run_bench

    if args.rows < args.accounts:
        sys.exit("bulkflow bench: --rows must be at least --accounts (one file per account)")

    asyncio.run(
        run_bench(
            settings,
            rows=args.rows,
            accounts=args.accounts,
            agents=args.agents,
            kill_agent=args.kill_agent,
            out=args.out,
        )
    )
    return 0


def _bench_scaling(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from ops.bench.scaling import AGENTS, run_scaling, scaling_table

    if args.table:
        # Reports of earlier runs: `bulkflow bench` JSON, or this command's.
        reports = []
        for path in args.table:
            body = orjson.loads(path.read_bytes())
            reports += body.get("runs", [body])
        print(scaling_table(reports), end="")
        return 0
    if args.rows < args.accounts:
        sys.exit(
            "bulkflow bench-scaling: --rows must be at least --accounts (one file per account)"
        )
    asyncio.run(
        run_scaling(
            settings,
            rows=args.rows,
            accounts=args.accounts,
            agents=args.agents or AGENTS,
            out=args.out,
        )
    )
    return 0


def _chaos(settings: Settings, args: argparse.Namespace) -> int:
    from ops.bench.chaos import run_chaos

    results = asyncio.run(
        run_chaos(
            settings,
            rows=args.rows,
            scenarios=args.scenario or list(constants.CHAOS_SCENARIOS),
            outage=args.outage,
            out=args.out,
        )
    )
    return 0 if all(r.verified for r in results) else 1


def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from ops.sql_query import render, run_query

    try:
        columns, rows = run_query(settings, args.query)
    except ClickHouseError as exc:  # a refused query or no ClickHouse: its message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(columns, rows, args.format))
    return 0


def _start(settings: Settings, args: argparse.Namespace) -> int:
    from ops.dev import daemon

    try:
        pid = daemon.start(settings)
    except daemon.DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bulkflow serving on {settings.api_url} (pid {pid}, log {daemon.log_file(settings)})")
    return 0


def _stop(settings: Settings, args: argparse.Namespace) -> int:
    from ops.dev import daemon

    daemon.stop(settings)
    print("bulkflow stopped")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    return asyncio.run(run_demo(settings, rows=args.rows, account=args.account))


def _sql_render(settings: Settings, args: argparse.Namespace) -> int:
    from bulkflow.sql import POSTGRES_DIR
    from schemas import sql_files

    directory = Path(str(POSTGRES_DIR / "queries"))
    if args.check:
        stale = sql_files.stale(directory)
        for name in stale:
            print(f"stale: sql/queries/{name}.sql (run `bulkflow sql-render`)", file=sys.stderr)
        return 1 if stale else 0
    for name in sql_files.write(directory):
        print(f"wrote sql/queries/{name}.sql")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    services = commands.add_parser("services", help="local Kafka, Postgres and Redis")
    services.add_argument("action", choices=["up", "down", "status"])
    services.set_defaults(handler=_services)

    migrate = commands.add_parser(
        "migrate", help="apply sql/ and clickhouse/ migrations, create topics"
    )
    migrate.add_argument(
        "--postgres-only",
        action="store_true",
        help="skip ClickHouse DDL (it is applied by the sink when it starts)",
    )
    migrate.set_defaults(handler=_migrate)

    serve = commands.add_parser("serve", help="run the API, the agents and the ClickHouse sink")
    serve.add_argument(
        "--role",
        action="append",
        choices=["api", "agents", "sink"],
        help="run only this role (repeatable); default: all three in one process",
    )
    serve.set_defaults(handler=_serve)

    accounts = commands.add_parser("accounts", help="create accounts and their API keys")
    accounts.add_argument("action", choices=["create", "list", "limit", "webhook-secret"])
    accounts.add_argument(
        "name", nargs="?", help="the new account's name (create) or id (limit, webhook-secret)"
    )
    accounts.add_argument("rows", nargs="?", help="limit: rows per minute, or 'default'")
    accounts.set_defaults(handler=_accounts)

    letters = commands.add_parser("dead-letters", help="chunks whose retries ran out")
    letters.add_argument("action", choices=["list", "replay"])
    letters.set_defaults(handler=_dead_letters)

    bench = commands.add_parser("bench", help="the pipeline against the Postgres ceiling")
    bench.add_argument("--rows", type=_positive, default=1_000_000)
    bench.add_argument("--accounts", type=_positive, default=1, help="one CSV action per account")
    bench.add_argument("--agents", type=_positive, default=1, help="agent replicas (processes)")
    bench.add_argument(
        "--kill-agent",
        action="store_true",
        help="SIGKILL a replica a third of the way through and start another",
    )
    bench.add_argument("--out", type=Path, help="write the report as JSON here")
    bench.set_defaults(handler=_bench)

    scaling = commands.add_parser(
        "bench-scaling", help="the bench with 1, 2 and 4 agent replicas, as one table"
    )
    scaling.add_argument("--rows", type=_positive, default=1_000_000, help="per run")
    scaling.add_argument("--accounts", type=_positive, default=8, help="one CSV action per account")
    scaling.add_argument(
        "--agents",
        type=_positive,
        action="append",
        help="replicas of one run (repeatable); default: 1, 2 and 4",
    )
    scaling.add_argument(
        "--out", type=Path, help="write the reports as JSON here, and the table next to it (.md)"
    )
    scaling.add_argument(
        "--table",
        type=Path,
        nargs="+",
        metavar="REPORT",
        help="run nothing: the table of these JSON reports (bench or bench-scaling)",
    )
    scaling.set_defaults(handler=_bench_scaling)

    chaos = commands.add_parser(
        "chaos", help="kill or stop each part during an action; check every count"
    )
    chaos.add_argument("--rows", type=_positive, default=200_000)
    chaos.add_argument(
        "--scenario",
        action="append",
        choices=constants.CHAOS_SCENARIOS,
        help="run only this scenario (repeatable); default: all, in this order",
    )
    chaos.add_argument(
        "--outage",
        type=float,
        help="seconds Postgres, Kafka or Redis stay down (default: 30, 20, 20)",
    )
    chaos.add_argument("--out", type=Path, help="write the results as JSON here")
    chaos.set_defaults(handler=_chaos)

    query = commands.add_parser(
        "sql", help="query the outcomes in ClickHouse (read-only with the embedded engine)"
    )
    query.add_argument("query", help='e.g. "SELECT * FROM bulkflow.action_durations"')
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(handler=_sql)

    render = commands.add_parser(
        "sql-render", help="render the entities' and actions' statements into sql/queries/"
    )
    render.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    render.set_defaults(handler=_sql_render)

    start = commands.add_parser("start", help="run `serve` in the background (idempotent)")
    start.set_defaults(handler=_start)
    stop = commands.add_parser("stop", help="stop the background server")
    stop.set_defaults(handler=_stop)

    demo = commands.add_parser("demo", help="submit sample contacts to a running bulkflow")
    demo.add_argument("--rows", type=int, default=100_000)
    demo.add_argument("--account", default="demo")
    demo.set_defaults(handler=_demo)

    from ops.client import add_commands  # submit, actions: the API's client

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # a setting to fix, not a traceback
        for error in exc.errors(include_url=False):
            name = "BULKFLOW_" + "_".join(map(str, error["loc"])).upper()
            print(f"error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    role = args.command
    if args.command == "serve":
        role = "+".join(args.role) if args.role else "api+agents+sink"
    logs.configure(settings.log_level, settings.log_format, role)
    result: int = args.handler(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
