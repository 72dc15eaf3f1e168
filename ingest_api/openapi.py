"""The OpenAPI 3.1 document, built from the app's route table and pydantic models.

Every HTTP route the app serves must have an :class:`Operation` here: the
document is built by walking the app's routes (:func:`build_document`), and
a route without one is an error at start-up, so the document cannot leave an
endpoint out. Bodies, parameters and responses are the JSON schemas of the
models the handlers parse and return (``model_json_schema``), never written
by hand. Swagger UI is served at ``/docs`` from the files the
``swagger-ui-py`` package ships: no CDN, no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bulkflow import constants
from ingest_api.admin import Limits
from ingest_api.entities import ENTITY_APIS, EntityApi, EntityFilters
from ingest_api.errors import ErrorBody, JsonResponse
from schemas.bulk_action import (
    BulkActionRequest,
    BulkActionStats,
    BulkActionView,
    CsvParameters,
    ListFilters,
    LogFilters,
    Reschedule,
    RowLog,
    Status,
)
from schemas.live import ActionEvent, SocketEvent
from schemas.webhook import DeliveryPage

_REF = "#/components/schemas/{model}"


# --- response shapes the handlers build as dicts -------------------------------


class ActionPage(BaseModel):
    data: list[BulkActionView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class LogPage(BaseModel):
    data: list[RowLog]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Summary(BaseModel):
    total: int
    by_status: dict[Status, int]


class Health(BaseModel):
    status: Literal["ok"]


class AccountLimits(BaseModel):
    account_id: str
    rows_per_minute: int | None


class WebhookSecret(BaseModel):
    account_id: str
    webhook_secret: str = Field(description="shown this once; signs the account's callbacks")


class FailedRowsQuery(BaseModel):
    """``GET /v1/bulk-actions/{id}/failed-rows.csv`` query parameters."""

    include: Literal["skipped"] | None = Field(
        default=None, description="`skipped` adds the skipped rows"
    )


# --- the route table's annotations ---------------------------------------------


@dataclass(frozen=True)
class Body:
    """A request body: media type -> model (or a raw schema)."""

    content: dict[str, type[BaseModel] | dict[str, Any]]
    required: bool = True


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    ok: int = 200
    returns: type[BaseModel] | None = None  # application/json body of the success
    returns_other: dict[str, dict[str, Any]] = field(default_factory=dict)  # media -> schema
    query: type[BaseModel] | None = None
    #: False: the query's required fields are required only with some bodies
    query_required: bool = True
    body: Body | None = None
    headers: tuple[dict[str, Any], ...] = ()  # header parameters
    ok_headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    other_statuses: dict[int, str] = field(default_factory=dict)  # without a body
    description: str = ""
    authenticated: bool = True
    admin: bool = False


_CSV_TEXT = {"type": "string", "contentMediaType": "text/csv"}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same key returns the original action; "
    "the key with another body is 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this event: the current state comes first",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}
#: One event of the SSE stream (schemathesis checks each against it).
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"const": "actionUpdate"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/ActionEvent"},
        },
    },
    "required": ["event", "id", "data"],
}


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema as a parameter's: optional by absence, not by null."""
    schema = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    variants = schema.get("anyOf")
    if variants:
        kept = [v for v in variants if v != {"type": "null"}]
        schema.pop("anyOf")
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    return schema


def _csv_multipart() -> dict[str, Any]:
    """The multipart form: the CSV parameters as fields, then the ``file`` part."""
    params = CsvParameters.model_json_schema(ref_template=_REF)
    properties = {name: _plain(schema) for name, schema in params["properties"].items()}
    properties["file"] = {"type": "string", "contentMediaType": "text/csv", "description": "last"}
    return {
        "type": "object",
        "properties": properties,
        "required": [*params.get("required", []), "file"],
    }


#: (method, path) -> what it does. The paths are the app's own route paths.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("Liveness", "service", returns=Health, authenticated=False),
    ("POST", "/v1/bulk-actions"): Operation(
        "Submit a bulk action (JSON rows, a CSV, or a multipart form with a CSV file)",
        "bulk actions",
        ok=202,
        returns=BulkActionView,
        query=CsvParameters,
        query_required=False,
        body=Body(
            {
                "application/json": BulkActionRequest,
                "text/csv": _CSV_TEXT,
                "multipart/form-data": _csv_multipart(),
            }
        ),
        headers=(_IDEMPOTENCY_KEY,),
        ok_headers={
            "Location": {"schema": {"type": "string"}, "description": "the new action"},
            "Idempotent-Replayed": {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "the action an earlier request with this key created",
            },
        },
        description="With a `text/csv` body the options are the query parameters "
        "(`entity` and `action` required); with `multipart/form-data` they are form "
        "fields before the `file` part. A JSON body carries them itself; the query "
        f"is then ignored. At most {constants.MAX_JSON_ROWS:,} rows per JSON request.",
    ),
    ("GET", "/v1/bulk-actions"): Operation(
        "List the account's actions, newest first",
        "bulk actions",
        returns=ActionPage,
        query=ListFilters,
    ),
    ("GET", "/v1/bulk-actions/summary"): Operation(
        "Count the account's actions by status", "bulk actions", returns=Summary
    ),
    ("GET", "/v1/bulk-actions/{action_id}"): Operation(
        "Status, counts and progress of an action", "bulk actions", returns=BulkActionView
    ),
    ("PATCH", "/v1/bulk-actions/{action_id}"): Operation(
        "Move a scheduled action that has not started",
        "controls",
        returns=BulkActionView,
        body=Body({"application/json": Reschedule}),
    ),
    ("GET", "/v1/bulk-actions/{action_id}/stats"): Operation(
        "Counts by outcome and operation, top reasons (ClickHouse)",
        "reports",
        returns=BulkActionStats,
    ),
    ("GET", "/v1/bulk-actions/{action_id}/logs"): Operation(
        "Per-row outcomes by row_no",
        "reports",
        returns=LogPage,
        query=LogFilters,
        returns_other={"application/x-ndjson": {"type": "string"}},
        description="`Accept: application/x-ndjson` streams every matching row.",
    ),
    ("GET", "/v1/bulk-actions/{action_id}/failed-rows.csv"): Operation(
        "The failed (and skipped) rows with their original columns",
        "reports",
        returns_other={"text/csv": _CSV_TEXT},
        query=FailedRowsQuery,
    ),
    ("GET", "/v1/bulk-actions/{action_id}/events"): Operation(
        "Live progress as Server-Sent Events",
        "live",
        returns_other={"text/event-stream": _SSE_EVENT},
        headers=(_LAST_EVENT_ID,),
        other_statuses={204: "the client has seen the final event already"},
        description="`actionUpdate` events (data: `ActionEvent`, id: its `event_id`): the "
        "current state first, then every change of status or counts; the stream ends "
        "after a terminal status. The WebSocket `/v1/live` carries the same events "
        'for many actions: send `{"type": "subscribe", "action_id": ...}`.',
    ),
    ("POST", "/v1/bulk-actions/{action_id}/cancel"): Operation(
        "Cancel: the remaining rows are skipped", "controls", returns=BulkActionView
    ),
    ("POST", "/v1/bulk-actions/{action_id}/pause"): Operation(
        "Hold a running action's remaining rows", "controls", returns=BulkActionView
    ),
    ("POST", "/v1/bulk-actions/{action_id}/resume"): Operation(
        "Let a paused action's rows go again", "controls", returns=BulkActionView
    ),
    ("GET", "/v1/bulk-actions/{action_id}/deliveries"): Operation(
        "The attempts to deliver the action to its callback_url",
        "webhooks",
        returns=DeliveryPage,
        description="One entry per attempt, in order: `failed` ones are followed by the next "
        "(the backoff doubles from 10 s up to an hour), until one is `delivered` (a 2xx) "
        "or 24 h after the first, when the last is `given_up`. Each POST carries "
        "`Bulkflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + '.' + body)>`.",
    ),
    ("POST", "/v1/admin/accounts/{account_id}/webhook-secret"): Operation(
        "Create or rotate an account's webhook secret (admin token)",
        "admin",
        returns=WebhookSecret,
        admin=True,
    ),
    ("PUT", "/v1/admin/accounts/{account_id}/limits"): Operation(
        "Set an account's row allowance (admin token)",
        "admin",
        returns=AccountLimits,
        body=Body({"application/json": Limits}),
        admin=True,
    ),
}


def _entity_operations(api: EntityApi) -> dict[tuple[str, str], Operation]:
    """The entity API of one registered entity (ingest_api/entities.py)."""
    name, one = api.entity.name, api.path + "/{entity_id}"
    writes = (
        "Applied as a one-row bulk action, with the same validation and SQL as bulk rows, "
        "and answered once applied (504 `timeout` after the write timeout, naming the "
        "action). A row that fails is 422 `row_failed` with its `reason` in `details`."
    )
    body = Body({"application/json": api.body})
    return {
        ("GET", api.path): Operation(
            f"List the account's {api.entity.plural} by id",
            name,
            returns=api.page,
            query=EntityFilters,
            description="`cf.<name>=<value>` (any number) keeps entities whose custom field "
            "has that value (as text, or as the JSON number/boolean it spells).",
        ),
        ("POST", api.path): Operation(
            f"Create a {name}",
            name,
            ok=201,
            returns=api.stored,
            body=body,
            ok_headers={"Location": {"schema": {"type": "string"}, "description": f"the {name}"}},
            description=writes + " An existing one is 409 `already_exists`.",
        ),
        ("GET", one): Operation(f"A {name} by id", name, returns=api.stored),
        ("PATCH", one): Operation(
            f"Update a {name}'s given fields (null clears one)",
            name,
            returns=api.stored,
            body=body,
            description=writes,
        ),
        ("DELETE", one): Operation(f"Delete a {name}", name, ok=204, description=writes),
    }


for _api in ENTITY_APIS.values():
    OPERATIONS |= _entity_operations(_api)

_RATE_HEADERS = {
    "RateLimit-Limit": {"schema": {"type": "string"}, "description": "requests per minute"},
    "RateLimit-Remaining": {"schema": {"type": "string"}, "description": "requests left now"},
    "RateLimit-Reset": {"schema": {"type": "string"}, "description": "seconds until full"},
}

_DESCRIPTION = """\
Bulk actions on CRM data. Every endpoint takes `Authorization: Bearer <API key>`;
the account comes from the key. Errors always have the shape
`{"error": {"code", "message", "details"}}`. Responses to authenticated requests carry
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refusal is 429 with
`Retry-After`.

**Live progress over WebSocket**: connect to `/v1/live` (with the
`Authorization` header, or send `{"type": "auth", "api_key": "..."}` first), then send
`{"type": "subscribe", "action_id": "..."}` or `unsubscribe`; every change of status or
counts arrives as `{"type": "actionUpdate", "action": ActionEvent}`.
"""


def _query_parameters(model: type[BaseModel], honour_required: bool) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", [])) if honour_required else set()
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _plain(prop)}
        for name, prop in schema["properties"].items()
    ]


def _content(
    content: dict[str, type[BaseModel] | dict[str, Any]], refs: dict[type[BaseModel], Any]
) -> dict[str, Any]:
    return {
        media: {"schema": refs[s] if isinstance(s, type) else s} for media, s in content.items()
    }


def _operation(
    method: str, path: str, op: Operation, refs: dict[type[BaseModel], Any]
) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_names(path)
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query, op.query_required)
    parameters += list(op.headers)
    error = {"application/json": {"schema": refs[ErrorBody]}}
    ok_content: dict[str, Any] = {}
    if op.returns is not None:
        ok_content["application/json"] = {"schema": refs[op.returns]}
    ok_content.update({media: {"schema": s} for media, s in op.returns_other.items()})
    headers = {**(_RATE_HEADERS if op.authenticated else {}), **op.ok_headers}
    responses: dict[str, Any] = {
        str(op.ok): {"description": "success", "content": ok_content, "headers": headers},
        **{str(s): {"description": d} for s, d in op.other_statuses.items()},
        "429": {
            "description": "too many requests",
            "content": error,
            "headers": {"Retry-After": {"schema": {"type": "string"}}, **_RATE_HEADERS},
        },
        "default": {"description": "an error", "content": error},
    }
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.description:
        operation["description"] = op.description
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body.required,
            "content": _content(op.body.content, refs),
        }
    if not op.authenticated:
        operation["security"] = []
    elif op.admin:
        operation["security"] = [{"adminToken": []}]
    return operation


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}").replace("-", "_").replace(".", "_") for p in path.split("/") if p]
    return "_".join([method.lower(), *words])


def _routes_of(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every documented HTTP route."""
    found = []
    for route in routes:
        if isinstance(route, Route) and route.include_in_schema:
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def build_document(
    routes: list[BaseRoute], operations: dict[tuple[str, str], Operation]
) -> dict[str, Any]:
    """The OpenAPI document of these routes; a route without an Operation is an error."""
    served = _routes_of(routes)
    missing = [f"{m} {p}" for m, p in served if (m, p) not in operations]
    if missing:
        raise LookupError(f"routes without an OpenAPI operation: {', '.join(missing)}")
    used = [operations[key] for key in served]
    models: set[type[BaseModel]] = {ErrorBody, ActionEvent, SocketEvent}
    for op in used:
        models |= {op.returns} if op.returns else set()
        if op.body is not None:
            models |= {m for m in op.body.content.values() if isinstance(m, type)}
    ordered = sorted(models, key=lambda m: m.__name__)
    refs_by_key, definitions = models_json_schema(
        [(m, "serialization" if m in _returned(used) else "validation") for m in ordered],
        ref_template=_REF,
    )
    refs: dict[type[BaseModel], Any] = {
        model: ref for (model, _), ref in refs_by_key.items() if issubclass(model, BaseModel)
    }
    paths: dict[str, dict[str, Any]] = {}
    for method, path in served:
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, operations[(method, path)], refs
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "bulkflow", "version": "1", "description": _DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "BULKFLOW_ADMIN_TOKEN",
                },
            },
        },
        "security": [{"apiKey": []}],
    }


def _returned(used: list[Operation]) -> set[type[BaseModel]]:
    return {op.returns for op in used if op.returns is not None} | {ErrorBody, ActionEvent}


# --- serving it ----------------------------------------------------------------


def _swagger_ui_assets() -> Path:
    """Swagger UI's static files, found without importing its package: the
    package's ``__init__`` imports jinja2 and PyYAML, ~3 MB of every API
    process's memory for files it only serves."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("swagger-ui-py is not installed")
    return Path(spec.submodule_search_locations[0]) / "static"


_ASSETS = _swagger_ui_assets()
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>bulkflow API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  </script>
</body>
</html>
"""


def docs_routes(
    app_routes: list[BaseRoute], operations: dict[tuple[str, str], Operation]
) -> list[BaseRoute]:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/`` (to the docs) for these routes."""
    document = build_document(app_routes, operations)

    async def openapi(request: Request) -> Response:
        return JsonResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    async def root(request: Request) -> Response:
        return RedirectResponse("/docs")

    return [
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        Route("/", root, methods=["GET"], include_in_schema=False),
        Mount("/docs/assets", StaticFiles(directory=_ASSETS), name="swagger-ui"),
    ]
