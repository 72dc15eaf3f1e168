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
headers, session and query ids) it has no use for.

It holds every account's outcomes, input rows included, so it is guarded as a
ClickHouse server would be, though it listens on 127.0.0.1 only:

- a password (user ``bulkflow``), as HTTP basic auth, ``X-ClickHouse-User`` /
  ``X-ClickHouse-Key`` or ``user`` / ``password`` parameters:
  ``BULKFLOW_EMBEDDED_CLICKHOUSE_PASSWORD``, or one generated per host into a
  0600 file under the state directory (:func:`front_password`);
- the Host header must be 127.0.0.1 or localhost (a web page's script that
  rebinds its own name to 127.0.0.1 sends its own name);
- its engine connection is ``readonly`` (nothing reaching it can write or
  change a setting) with ``max_execution_time`` and ``max_rows_to_read``: the
  engine runs one call at a time, on the thread the sink's inserts share, so
  one heavy query must not hold it;
- a request body (query and parameters) has at most 4 MiB.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from bulkflow.settings import Settings

_PARAM = "param_"
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
_DEFAULT_FORMAT = "TabSeparated"  # ClickHouse's, for a query without FORMAT
_FORM = "multipart/form-data"  # what clickhouse-connect sends for long bind parameters
_SYNTAX_ERROR, _UNKNOWN_DATABASE, _AUTHENTICATION_FAILED = 62, 81, 516  # ClickHouse's codes
_CLIENT_ERRORS = {_SYNTAX_ERROR, _UNKNOWN_DATABASE}
_MAX_BODY = 4 * 1024 * 1024  # bytes of a query request
_LOCAL_HOSTS = ["127.0.0.1", "localhost"]
USER = "bulkflow"
_SECRET_FILE = "clickhouse-front.secret"


def front_password(settings: Settings) -> str:
    """The front's password: the setting's, or this host's, made by the first to ask.

    Written under a temporary name and linked into place, so that a process
    reading it never sees it half written, and two starting at once agree.
    """
    if settings.embedded_clickhouse_password is not None:
        return settings.embedded_clickhouse_password.get_secret_value()
    path = settings.state_dir / _SECRET_FILE
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{_SECRET_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
        finally:
            os.close(fd)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process was first: its password is the one
        finally:
            os.unlink(draft)
    return path.read_text().strip()


def front_client_url(settings: Settings) -> str:
    """The front's URL with its credentials, for clickhouse-connect."""
    password = quote(front_password(settings), safe="")
    return f"http://{USER}:{password}@127.0.0.1:{settings.embedded_clickhouse_port}"


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
            connection.query(f"SET max_execution_time = {constants.FRONT_MAX_QUERY_SECONDS}")
            connection.query(f"SET max_rows_to_read = {constants.FRONT_MAX_ROWS_TO_READ}")
            connection.query("SET readonly = 1")  # last: from here on no setting changes
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


def create_front(front: EngineFront, password: str) -> Starlette:
    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        try:
            if not _authenticated(request, password):
                raise EngineError.refusal(
                    _AUTHENTICATION_FAILED, f"{USER}: authentication failed: password is incorrect"
                )
            sql, parameters = await _statement(request)
            answer = await front.query(sql, parameters)
        except EngineError as exc:
            status = 400 if exc.code in _CLIENT_ERRORS else 500
            return PlainTextResponse(
                exc.message,
                status_code=401 if exc.code == _AUTHENTICATION_FAILED else status,
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
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=_LOCAL_HOSTS)],
    )


def _authenticated(request: Request, password: str) -> bool:
    """As ClickHouse takes credentials: basic auth, its headers, or URL parameters."""
    user, offered = (
        request.headers.get("x-clickhouse-user"),
        request.headers.get("x-clickhouse-key"),
    )
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, offered = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
    elif user is None:
        user, offered = request.query_params.get("user"), request.query_params.get("password")
    if user != USER or offered is None:
        return False
    return hmac.compare_digest(offered.encode(), password.encode())


async def _statement(request: Request) -> tuple[str, dict[str, str]]:
    """The query and its bind parameters, from the URL, the body or form fields."""
    fields: dict[str, str] = dict(request.query_params)
    received = bytearray()
    async for block in request.stream():
        received += block
        if len(received) > _MAX_BODY:
            raise EngineError.refusal(_SYNTAX_ERROR, f"the request is over {_MAX_BODY} bytes")
    body = request._body = bytes(received)  # for request.form(), as request.body() leaves it
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
