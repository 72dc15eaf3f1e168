"""The Starlette application, built from resources its caller opened."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from bulkflow.http_timeouts import BodyTimeout
from ingest_api.admin import Admin, admin_routes
from ingest_api.controls import control_routes
from ingest_api.dashboard import dashboard_routes
from ingest_api.entities import entity_routes
from ingest_api.errors import ApiError, api_error, body_timeout, http_error, unexpected_error
from ingest_api.live import live_routes
from ingest_api.observability import RequestObservability, metrics_endpoint
from ingest_api.openapi import OPERATIONS, docs_routes
from ingest_api.request_limits import RateLimitHeaders
from ingest_api.routes import ApiResources, routes
from ingest_api.webhooks import webhook_routes


def create_app(resources: ApiResources, admin: Admin) -> Starlette:
    api_routes = [
        *routes,
        *control_routes,
        *admin_routes(admin),
        *live_routes,
        *entity_routes,
        *webhook_routes,
    ]
    app = Starlette(
        routes=[
            *api_routes,
            *docs_routes(api_routes, OPERATIONS),
            *dashboard_routes,
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        middleware=[Middleware(RequestObservability), Middleware(RateLimitHeaders)],
        exception_handlers={
            ApiError: api_error,
            BodyTimeout: body_timeout,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.resources = resources
    return app
