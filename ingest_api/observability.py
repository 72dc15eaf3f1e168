"""The API's request ids, request metrics and ``/metrics``.

Every response carries ``X-Request-Id``: the client's own, when it sent a
short one of safe characters, else a new one; the id is in every log record
made while the request is handled (``bulkflow/logs.py``), so a client's report
of a failure finds its log lines. Each request is counted and timed by its
route's path template (``bulkflow_http_requests_total``,
``bulkflow_http_request_seconds``), so label sets stay bounded.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkflow import metrics
from bulkflow.logs import REQUEST_ID

HEADER = "X-Request-Id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UNMATCHED = "unmatched"


class RequestObservability:
    """ASGI middleware: request id in and out, request count and latency by route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _CLIENT_ID.fullmatch(offered) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # if the app ends without a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER.lower().encode(), request_id.encode()),
                ]
                route = getattr(scope.get("route"), "path", _UNMATCHED)
                method = scope["method"]
                metrics.HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
                metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


async def metrics_endpoint(request: Request) -> Response:
    """This process's metrics, for Prometheus."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
