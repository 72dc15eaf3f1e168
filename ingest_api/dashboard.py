"""The dashboard: one static page and its script, served by the API, no build step.

The page holds no data and no secret: the script asks for the API key once,
keeps it in the tab's ``sessionStorage`` (gone when the tab closes, never in
a cookie, so no other site can make the browser send it) and calls the same
``/v1`` endpoints as any client, so the key decides the account and every
limit applies. A strict Content-Security-Policy lets the page run only its own
script and style and talk only to its own origin; what the API returns is put
in the page as text, never as HTML, so row values cannot run as script.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_STATIC = resources.files("ingest_api") / "static"
_TYPES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _file(name: str) -> Route:
    body = (_STATIC / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=_TYPES[name], headers=_HEADERS)

    path = "/dashboard" if name == "dashboard.html" else f"/dashboard/{name}"
    return Route(path, serve, methods=["GET"])


dashboard_routes = [_file(name) for name in _TYPES]
