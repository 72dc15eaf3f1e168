"""The Starlette application, built from resources its caller opened."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ingest_api.errors import ApiError, api_error, http_error
from ingest_api.routes import ApiResources, routes


def create_app(resources: ApiResources) -> Starlette:
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
    app.state.resources = resources
    return app
