"""The embedded ClickHouse engine, served read-only over ClickHouse's HTTP interface.

chdb runs the engine inside one process only: the sink's, which writes the
outcomes. An API process running apart reads them through this front, with
the same clickhouse-connect HTTP client it would use against a ClickHouse
server, so it never loads the engine (~200 MB of resident memory).

The front answers the part of the HTTP interface that clickhouse-connect's
queries use: the query in the body, the URL or a multipart form field;
``param_*`` bind parameters; errors with ``X-ClickHouse-Exception-Code`` (400
for a request it cannot take, 500 for the engine's errors; the client treats
both alike). Other URL parameters are client settings (compression, progress
headers, session and query ids) it has no use for. Its engine connection is
``readonly``, so nothing reaching it can write, and it listens on 127.0.0.1
only, without authentication: like the local Postgres and Redis, it is for
one host's processes, and deployments use a ClickHouse server instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bulkflow.clickhouse import ClickHouse

_PARAM = "param_"
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
_DEFAULT_FORMAT = "TabSeparated"  # ClickHouse's, for a query without FORMAT
_FORM = "multipart/form-data"  # what clickhouse-connect sends for long bind parameters
_SYNTAX_ERROR, _UNKNOWN_DATABASE = 62, 81  # ClickHouse error codes
_CLIENT_ERRORS = {_SYNTAX_ERROR, _UNKNOWN_DATABASE}


class EngineError(Exception):
    """The engine refused a query: ClickHouse's error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def refusal(cls, code: int, reason: str) -> EngineError:
        """The front's own refusal, worded as the engine's errors are."""
        return cls(code, f"Code: {code}. DB::Exception: {reason}")


class EngineFront:
    """Read-only queries of the embedded engine, for :func:`create_front`."""

    def __init__(self, clickhouse: ClickHouse, connection: Any) -> None:
        self._clickhouse = clickhouse
        self._connection = connection

    @classmethod
    @asynccontextmanager
    async def open(cls, clickhouse: ClickHouse) -> AsyncIterator[EngineFront]:
        """A read-only connection to the embedded engine ``clickhouse`` opened.

        On the engine's thread, like every call of ``clickhouse``: the engine
        is never entered from two threads at once.
        """
        path = clickhouse.engine_path
        if path is None:
            raise ValueError("the front serves an embedded engine, not a ClickHouse server")

        def connect() -> Any:
            # Imported here: loading the engine's library alone costs a process
            # ~200 MB, and every role imports this module.
            import chdb

            # chdb tells engines apart by path string: spell it as
            # clickhouse-connect did for the client's (resolved).
            connection = chdb.connect(os.path.realpath(path))  # type: ignore[no-untyped-call]
            connection.query("SET readonly = 1")
            return connection

        connection = await clickhouse.on_engine_thread(connect)
        try:
            yield cls(clickhouse, connection)
        finally:
            await clickhouse.on_engine_thread(connection.close)

    async def query(self, sql: str, parameters: dict[str, str]) -> Answer:
        """The engine's answer, or :class:`EngineError`."""

        def run() -> Answer:
            try:
                result = self._connection.query(sql, _DEFAULT_FORMAT, params=parameters)
            except Exception as exc:  # chdb has one class for every engine error
                code = _ERROR_CODE.search(str(exc))
                raise EngineError(int(code.group(1)) if code else 0, str(exc)) from exc
            # Read here: the result is the engine's memory, on the engine's thread.
            summary = {
                "read_rows": str(result.rows_read()),
                "read_bytes": str(result.bytes_read()),
                "elapsed_ns": str(int(result.elapsed() * 1e9)),
            }
            return Answer(result.bytes(), summary)

        return await self._clickhouse.on_engine_thread(run)


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    summary: dict[str, str]  # as ClickHouse's X-ClickHouse-Summary header


def create_front(front: EngineFront) -> Starlette:
    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        try:
            sql, parameters = await _statement(request)
            answer = await front.query(sql, parameters)
        except EngineError as exc:
            return PlainTextResponse(
                exc.message,
                status_code=400 if exc.code in _CLIENT_ERRORS else 500,
                headers={"X-ClickHouse-Exception-Code": str(exc.code)},
            )
        trailing = _TRAILING_FORMAT.search(sql)
        return Response(
            answer.body,
            headers={
                "X-ClickHouse-Format": trailing.group(1) if trailing else _DEFAULT_FORMAT,
                "X-ClickHouse-Summary": orjson.dumps(answer.summary).decode(),
            },
        )

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/", query, methods=["GET", "POST"]),
        ]
    )


async def _statement(request: Request) -> tuple[str, dict[str, str]]:
    """The query and its bind parameters, from the URL, the body or form fields."""
    fields: dict[str, str] = dict(request.query_params)
    body = await request.body()
    if request.headers.get("content-type", "").startswith(_FORM):
        async with request.form() as form:
            fields.update({k: v for k, v in form.items() if isinstance(v, str)})
        body = b""
    if fields.get("database", "default") != "default":
        raise EngineError.refusal(_UNKNOWN_DATABASE, "the front serves the default database only")
    # As ClickHouse: the URL's query, then the body (the rest of it, or its data).
    try:
        sql = "\n".join(part for part in (fields.get("query", ""), body.decode()) if part)
    except UnicodeDecodeError:
        raise EngineError.refusal(_SYNTAX_ERROR, "the query is not UTF-8") from None
    if not sql.strip():
        raise EngineError.refusal(_SYNTAX_ERROR, "empty query")
    parameters = {k.removeprefix(_PARAM): v for k, v in fields.items() if k.startswith(_PARAM)}
    return sql, parameters
