"""Deadlines for slow HTTP clients, which uvicorn's h11 protocol does not have.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``), but a
client that opens a connection and sends half a request line, or headers one
byte a minute, or a body that stops, holds its connection and the request's
task forever. Here:

- :class:`HeaderTimeoutProtocol`: a connection whose request line and headers
  are not complete ``header_timeout`` seconds after its first byte (or after
  it opened) is closed;
- :class:`BodyIdleTimeout`: while the application waits for more of a body,
  each part must come within ``seconds``; otherwise :class:`BodyTimeout` is
  raised where the application reads it (the API answers 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


class BodyTimeout(Exception):
    """The client sent nothing more of a request body for too long."""


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for the request line and headers."""

    header_timeout = 10.0  # seconds; see :func:`with_header_timeout`
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request begun, not yet whole
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this deadline."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


class BodyIdleTimeout:
    """ASGI middleware: the next part of a request body within ``seconds``, or BodyTimeout."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:  # what is left to receive is the disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message: dict[str, Any] = dict(await receive())
            except TimeoutError:
                raise BodyTimeout(
                    f"no part of the request body came for {self.seconds:g} s"
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, receive_in_time, send)
