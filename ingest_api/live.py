"""Live progress: one change stream per API process, fanned out over WebSocket and SSE.

Postgres publishes every change of an action's status or counts on one
channel (the trigger of ``sql/009_live_progress.sql``), whoever made it. Each
API process LISTENs on one connection of its own (:class:`ChangeStream`) and
hands each event to the subscribers of that action (:class:`LiveHub`);
nothing polls the database per client.

A subscriber holds at most one pending event per action it follows, the
latest: a slow subscriber skips intermediate progress, never the last state,
so its memory is bounded by the actions it follows, whatever the rate of
changes. Events carry ``event_id``, a per-action sequence: resuming from
``Last-Event-ID`` sends the current state, then what follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bulkflow import constants, sql
from bulkflow.background import background
from ingest_api.accounts import account_for_key
from ingest_api.errors import (
    ApiError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    error_body,
)
from ingest_api.routes import ApiResources, caller, owned
from schemas.live import ActionEvent, SocketEvent

log = logging.getLogger(__name__)


class Subscriber:
    """One WebSocket or SSE stream: the latest unsent event of each action it follows."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.actions: set[uuid.UUID] = set()
        self._pending: dict[uuid.UUID, ActionEvent] = {}
        self._ready = asyncio.Event()

    def offer(self, event: ActionEvent) -> None:
        """Keep ``event`` unless a later state of its action is pending already."""
        held = self._pending.get(event.id)
        if held is not None and held.event_id >= event.event_id:
            return
        self._pending[event.id] = event
        self._ready.set()

    async def next(self, within: float | None = None) -> list[ActionEvent]:
        """The pending events, oldest change first; [] after ``within`` seconds without one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within)
        self._ready.clear()
        events = sorted(self._pending.values(), key=lambda e: e.event_id)
        self._pending.clear()
        return events


class LiveHub:
    """Who follows which action, in this process; events in, to their subscribers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._following: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self._subscribers: set[Subscriber] = set()
        self._per_account: dict[str, int] = defaultdict(int)

    def join(self, account_id: str) -> Subscriber:
        """A new subscriber, within the process's and the account's allowance (429 beyond)."""
        if (
            len(self._subscribers) >= constants.LIVE_SUBSCRIBERS
            or self._per_account[account_id] >= constants.LIVE_SUBSCRIBERS_PER_ACCOUNT
        ):
            raise TooManyRequests(
                "too many live subscribers; retry later",
                {"limit_per_account": constants.LIVE_SUBSCRIBERS_PER_ACCOUNT},
                {"Retry-After": "5"},
            )
        subscriber = Subscriber(account_id)
        self._subscribers.add(subscriber)
        self._per_account[account_id] += 1
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        if subscriber not in self._subscribers:
            return
        for action_id in list(subscriber.actions):
            self.unfollow(subscriber, action_id)
        self._subscribers.discard(subscriber)
        self._per_account[subscriber.account_id] -= 1
        if not self._per_account[subscriber.account_id]:
            del self._per_account[subscriber.account_id]

    async def follow(self, subscriber: Subscriber, action_id: uuid.UUID) -> ActionEvent | None:
        """Follow an action of the subscriber's account, and offer its current state.

        Registered before the state is read, so no change falls in between;
        None (and nothing followed) if the action is not the account's.
        """
        self._following[action_id].add(subscriber)
        subscriber.actions.add(action_id)
        rows = await self._pool.fetch(sql.postgres("bulk_actions_events"), [action_id])
        if not rows or rows[0]["account_id"] != subscriber.account_id:
            self.unfollow(subscriber, action_id)
            return None
        current = ActionEvent.of(rows[0])
        subscriber.offer(current)
        return current

    def unfollow(self, subscriber: Subscriber, action_id: uuid.UUID) -> None:
        subscriber.actions.discard(action_id)
        followers = self._following.get(action_id)
        if followers is not None:
            followers.discard(subscriber)
            if not followers:
                del self._following[action_id]

    def publish(self, values: dict[str, Any]) -> None:
        """One notification: to the action's followers of the same account."""
        followers = self._following.get(uuid.UUID(values["id"]))
        if not followers:
            return
        event = ActionEvent.of(values)
        for subscriber in followers:
            if subscriber.account_id == values["account_id"]:
                subscriber.offer(event)

    async def resync(self) -> None:
        """After (re)connecting: the current state of every followed action."""
        if not self._following:
            return
        rows = await self._pool.fetch(sql.postgres("bulk_actions_events"), list(self._following))
        for row in rows:
            self.publish({**dict(row), "id": str(row["id"])})

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class ChangeStream:
    """The process's one LISTEN connection; reconnects, and resyncs, when it is lost."""

    def __init__(self, dsn: str, hub: LiveHub) -> None:
        self._dsn = dsn
        self._hub = hub
        self.listening = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveHub]:
        async with background(self._listen_forever(), "live-change-stream"):
            yield self._hub

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            self._hub.publish(orjson.loads(payload))
        except (ValueError, KeyError, ValidationError):
            log.warning("ignored a malformed notification on %s: %.200s", channel, payload)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("live change stream lost (%r); reconnecting", exc)
            self.listening.clear()
            await asyncio.sleep(constants.RETRY_INTERVAL)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=constants.PROBE_TIMEOUT)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(constants.LIVE_CHANNEL, self._notified)
            self.listening.set()
            await self._hub.resync()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), constants.LIVE_PROBE_EVERY)
                if not lost.is_set():  # a quiet connection may be a dead one
                    await conn.fetchval("SELECT 1", timeout=constants.PROBE_TIMEOUT)
        finally:
            conn.terminate()


def _hub(resources: ApiResources) -> LiveHub:
    hub = resources.live
    assert hub is not None, "the API was built without a change stream"
    return hub


# --- Server-Sent Events ----------------------------------------------------


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationFailed(
            "Last-Event-ID must be an event id this stream sent",
            [{"loc": ["header", "Last-Event-ID"], "msg": "not an event id"}],
        )
    return int(raw)


def _sse(event: ActionEvent) -> bytes:
    data = orjson.dumps(event.model_dump(mode="json"))
    return b"id: %d\nevent: actionUpdate\ndata: %s\n\n" % (event.event_id, data)


async def action_events(request: Request) -> Response:
    """``GET /v1/bulk-actions/{id}/events``: the current state, then every change, until it ends."""
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    after = _last_event_id(request)
    hub = _hub(resources)
    subscriber = hub.join(account)
    try:
        current = await hub.follow(subscriber, record["id"])
    except BaseException:
        hub.leave(subscriber)
        raise
    if current is None:
        hub.leave(subscriber)
        raise NotFound("no such bulk action")
    if current.terminal and current.event_id <= after:
        hub.leave(subscriber)  # the client saw the end already: nothing more will come
        return Response(status_code=204)

    async def stream() -> AsyncIterator[bytes]:
        sent = after
        try:
            yield b"retry: 2000\n\n"
            while True:
                events = await subscriber.next(constants.LIVE_KEEPALIVE)
                if not events:
                    yield b": keep-alive\n\n"
                for event in events:
                    if event.event_id <= sent:
                        continue
                    yield _sse(event)
                    sent = event.event_id
                    if event.terminal:
                        return
        finally:
            hub.leave(subscriber)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- WebSocket ---------------------------------------------------------------


class _SocketClosed(Exception):
    pass


def _as_request(ws: WebSocket) -> Request:
    """The handshake as a GET request, for the address and account allowances."""
    return Request({**ws.scope, "type": "http", "method": "GET"})


async def _send(ws: WebSocket, message: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(message).decode())


async def _send_error(ws: WebSocket, exc: ApiError, **extra: Any) -> None:
    await _send(ws, {"type": "error", **extra, **error_body(exc.code, exc.message, exc.details)})


async def _receive(ws: WebSocket) -> dict[str, Any]:
    try:
        text = await ws.receive_text()
    except WebSocketDisconnect:
        raise _SocketClosed from None
    except KeyError:  # a binary frame: no "text" in the message
        return {}
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return message if isinstance(message, dict) else {}


async def _authenticate(ws: WebSocket, resources: ApiResources, request: Request) -> str:
    """The account of the handshake's bearer key, or of a first ``auth`` message."""
    await resources.limits.check_address(request)
    if "authorization" in ws.headers:
        try:
            return await resources.auth.account(request)
        except ApiError:
            await resources.limits.auth_failed(request)
            raise
    try:
        message = await asyncio.wait_for(_receive(ws), constants.LIVE_AUTH_WAIT)
    except TimeoutError:
        message = {}
    key = message.get("api_key") if message.get("type") == "auth" else None
    account = await account_for_key(resources.store.pool, key) if isinstance(key, str) else None
    if account is None:
        await resources.limits.auth_failed(request)
        raise Unauthorized(
            "send 'Authorization: Bearer <key>' with the handshake, "
            'or {"type": "auth", "api_key": "<key>"} first'
        )
    return account


async def live_socket(ws: WebSocket) -> None:
    """``/v1/live``: subscribe to actions, receive ``actionUpdate`` events."""
    resources: ApiResources = ws.app.state.resources
    hub = _hub(resources)
    request = _as_request(ws)
    await ws.accept()
    try:
        account = await _authenticate(ws, resources, request)
        subscriber = hub.join(account)
    except ApiError as exc:
        await _send_error(ws, exc)
        await ws.close(code=4000 + exc.status)
        return
    except _SocketClosed:
        return
    await _send(ws, {"type": "ready", "account_id": account})
    try:
        async with asyncio.TaskGroup() as tasks:
            sender = tasks.create_task(_send_events(ws, subscriber))
            await _serve_messages(ws, resources, hub, subscriber, request, account)
            sender.cancel()
    except* (_SocketClosed, WebSocketDisconnect, RuntimeError):
        pass  # the client went away (RuntimeError: a send after the close)
    finally:
        hub.leave(subscriber)


async def _send_events(ws: WebSocket, subscriber: Subscriber) -> None:
    while True:
        for event in await subscriber.next():
            await ws.send_text(SocketEvent(action=event).model_dump_json())


async def _serve_messages(
    ws: WebSocket,
    resources: ApiResources,
    hub: LiveHub,
    subscriber: Subscriber,
    request: Request,
    account: str,
) -> None:
    while True:
        message = await _receive(ws)
        kind = message.get("type")
        if kind == "ping":
            await _send(ws, {"type": "pong"})
            continue
        if kind not in ("subscribe", "unsubscribe"):
            await _send_error(
                ws,
                ValidationFailed(
                    "send a JSON object with type subscribe, unsubscribe or ping",
                    [{"loc": ["type"], "msg": "unknown message type"}],
                ),
            )
            continue
        try:
            action_id = uuid.UUID(str(message.get("action_id")))
        except ValueError:
            await _send_error(
                ws, NotFound("no such bulk action"), action_id=message.get("action_id")
            )
            continue
        if kind == "unsubscribe":
            hub.unfollow(subscriber, action_id)
            await _send(ws, {"type": "unsubscribed", "action_id": str(action_id)})
            continue
        try:
            await resources.limits.check(request, account)  # each subscribe is a read
            if len(subscriber.actions) >= constants.LIVE_ACTIONS_PER_SOCKET:
                raise ValidationFailed(
                    f"a socket follows at most {constants.LIVE_ACTIONS_PER_SOCKET} actions",
                    [{"loc": ["action_id"], "msg": "unsubscribe from another one first"}],
                )
            if await hub.follow(subscriber, action_id) is None:
                raise NotFound("no such bulk action")
        except ApiError as exc:
            await _send_error(ws, exc, action_id=str(action_id))
            continue
        await _send(ws, {"type": "subscribed", "action_id": str(action_id)})


live_routes = [
    Route("/v1/bulk-actions/{action_id}/events", action_events, methods=["GET"]),
    WebSocketRoute("/v1/live", live_socket),
]
