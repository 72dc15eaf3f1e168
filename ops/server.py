"""``bulkflow serve``: the API, the agents and the sink, in one process or apart.

Resources are opened here, in one ``AsyncExitStack``, and handed to the roles;
closing the stack on shutdown closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

import pyarrow as pa
import uvicorn
from clickhouse_connect.driver.exceptions import OperationalError
from starlette.types import ASGIApp

from bulkflow import constants, metrics
from bulkflow.clickhouse import ClickHouse, ClickHouseUnavailable
from bulkflow.clickhouse_front import EngineFront, create_front, front_client_url, front_password
from bulkflow.database import connect_pool
from bulkflow.http_timeouts import BodyIdleTimeout, with_header_timeout
from bulkflow.settings import Role, Settings
from bulkflow.topics import ensure_topics
from ingest_api.uploads import UploadReaper

log = logging.getLogger(__name__)


async def serve(settings: Settings, roles: Collection[Role]) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust's data folder lives here
    _use_system_allocator()
    keep_pandas_out()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(connect_pool(settings))
        await ensure_topics(settings)
        clickhouse = await _open_clickhouse(stack, settings, roles)
        if "sink" in roles:
            assert clickhouse is not None
            await clickhouse.apply_migrations()
        if {"agents", "sink"} & set(roles):
            # Imported here: a process without these roles never loads them.
            from ops.stream_roles import start_stream_roles

            await start_stream_roles(stack, settings, pool, clickhouse, roles)
        if {"api", "agents"} & set(roles):
            # Any process that survives an API process's death ends its uploads.
            await stack.enter_async_context(UploadReaper(pool).running())
        if settings.metrics_port:
            stack.enter_context(metrics.serving(settings.metrics_host, settings.metrics_port))
        # The process that holds the embedded engine serves it to every other
        # client (an API apart, `bulkflow sql`, analysts), whatever else it runs.
        front_app = None
        if "sink" in roles and settings.embedded_clickhouse:
            assert clickhouse is not None
            front = await stack.enter_async_context(EngineFront.open(clickhouse))
            front_app = create_front(front, front_password(settings))
        _tune_garbage_collector()
        log.info("bulkflow serving roles %s", ", ".join(sorted(roles)))
        if "api" in roles:
            assert clickhouse is not None
            # Imported here: a process without the API never loads its modules
            # (starlette's app, the OpenAPI page, the CSV reader: ~10 MB).
            from ops.api_role import open_api

            api = await open_api(stack, settings, pool, clickhouse)
            if front_app is not None:
                port = settings.embedded_clickhouse_port
                await stack.enter_async_context(
                    _serving_beside(front_app, "127.0.0.1", port, settings)
                )
            await _serve_http(api, settings.api_host, settings.api_port, settings)
        elif front_app is not None:
            await _serve_http(front_app, "127.0.0.1", settings.embedded_clickhouse_port, settings)
        else:
            await _until_signalled()


async def _open_clickhouse(
    stack: AsyncExitStack, settings: Settings, roles: Collection[Role]
) -> ClickHouse | None:
    """The sink's ClickHouse, or the API's: the embedded engine opens in one process only.

    An API process without the sink reads the embedded engine through the
    sink process's front (see ``bulkflow/clickhouse_front.py``).
    """
    if "sink" in roles or ("api" in roles and not settings.embedded_clickhouse):
        return await stack.enter_async_context(ClickHouse.open(settings.clickhouse_dsn))
    if "api" in roles:
        url, wait = settings.embedded_clickhouse_front_url, settings.embedded_clickhouse_wait
        try:
            client = ClickHouse.open(front_client_url(settings), wait=wait)
            return await stack.enter_async_context(client)
        except OperationalError as exc:
            raise ClickHouseUnavailable(
                f"no embedded ClickHouse at {url} after {wait:g} s: start the sink "
                "role (bulkflow serve --role sink), or set BULKFLOW_CLICKHOUSE_URL"
            ) from exc
    return None


async def _serve_http(app: ASGIApp, host: str, port: int, settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then return: the caller's resources close in order.

    uvicorn raises the signal it stopped on again once it has put the previous
    handlers back; without handlers of the loop's, the default one would end
    the process there, before Faust commits its offsets and the clients close.
    Removed afterwards: a second signal during the shutdown ends the process.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, lambda: None)
    try:
        await uvicorn.Server(_http_config(app, host, port, settings)).serve()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _http_config(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        BodyIdleTimeout(app, settings.api_body_idle_timeout),
        host=host,
        port=port,
        lifespan="off",
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through bulkflow's handler (bulkflow/logs.py)
        access_log=False,
        # Slow clients: see bulkflow/http_timeouts.py.
        http=with_header_timeout(settings.api_header_timeout),
        timeout_keep_alive=settings.api_keep_alive_timeout,
        ws_max_size=constants.LIVE_MESSAGE_BYTES,
    )


class _ServerBeside(uvicorn.Server):
    """A second HTTP server of the process: the first one handles the signals."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def _serving_beside(
    app: ASGIApp, host: str, port: int, settings: Settings
) -> AsyncIterator[None]:
    """Serve ``app`` inside the block, listening before it starts; stop it on exit."""
    server = _ServerBeside(_http_config(app, host, port, settings))
    task = asyncio.create_task(server.serve(), name=f"http-{port}")
    while not server.started:
        if task.done():
            task.result()  # its error; uvicorn ends the process if it cannot listen
            raise RuntimeError(f"the server on {host}:{port} stopped before it started")
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _use_system_allocator() -> None:
    """Arrow's buffers from the C library's allocator, not Arrow's default (mimalloc).

    After a million-row CSV upload, read region by region on a thread of its
    own, mimalloc held ~15 MB more of the API process than the C library's
    allocator (peak RSS 157 MB against a budget of 150), for no CPU the bench
    could tell apart in the API, the agents or the sink.
    """
    pa.set_memory_pool(pa.system_memory_pool())


class _NoPandas(MetaPathFinder):
    """An import of pandas fails as if it were not installed (see keep_pandas_out)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"{fullname} is kept out of bulkflow's roles", name=fullname)
        return None


def keep_pandas_out() -> None:
    """Tell pyarrow pandas is not installed, so that it never imports it.

    pyarrow imports pandas, if it is installed (chdb installs it), the first
    time it converts a Python value (a list, a scalar argument of a compute
    function), to tell pandas objects apart: ~40 MB more of every process
    that does, and 0.3 s of CPU, for a library no role uses. Sparing the
    conversions instead (``schemas/cells.py`` does for the API's CSV reader)
    would take every compute call with a Python scalar, in every column rule.
    Not once pandas is loaded: then it is in use.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def _tune_garbage_collector() -> None:
    """Collect young objects less often, and never rescan what startup made.

    Most objects a batch makes are freed by reference counting anyway; the
    cyclic collector only has to run often enough to bound cyclic garbage.
    ``gc.freeze`` moves the modules, clients and Faust's objects, all alive
    until shutdown, out of the collector's sight.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(constants.GC_YOUNG_THRESHOLD, middle, old)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
