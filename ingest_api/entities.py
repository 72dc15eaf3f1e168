"""The entity API: ``/v1/<plural>`` for every registered entity, from the same registry.

Reads go straight to Postgres, scoped by account. Writes are one-row bulk
actions: submitted like any other (:meth:`Submitter.submit_rows`), validated
and applied by the agents with the same code and SQL as every bulk row, and
answered once the action is terminal (its status arrives on the change
stream, :class:`LiveHub`); the row's outcome is read from the chunk ledger,
written in the transaction that applied the row. So a single-entity write
and a bulk row cannot mean different things.

The statements are templates for any entity's table (``sql/queries/entity_*.sql``):
the table and identifier columns are rendered once per entity, quoted, from
the registry (:func:`rendered`), never from a request.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkflow import constants, sql
from bulkflow.logs import ACTION_ID
from ingest_api.errors import (
    ApiError,
    Conflict,
    JsonResponse,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from ingest_api.pagination import ENTITIES_CURSOR
from ingest_api.routes import ApiResources, caller, read_json
from ingest_api.validation import parse
from schemas.bulk_action import ActionOptions
from schemas.entity import ENTITIES, MATCH_ID, Entity
from schemas.messages import CODES, Operation, Outcome, RowProblem

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_ID_MAX = 2**63 - 1  # bigint
_CUSTOM = "cf."  # query parameters cf.<name>=<value> filter on custom fields
#: Reasons of rows that failed for a reason of ours, not of the row's: 503.
_SERVER_REASONS = frozenset(
    {"internal_error", "retries_exhausted", "held_for_replay", "unknown_entity"}
)


class WriteTimeout(ApiError):
    status = 504
    code = "timeout"


class EntityFilters(BaseModel):
    """``GET /v1/<plural>`` query parameters (and ``cf.<name>=<value>``, any number)."""

    model_config = ConfigDict(extra="forbid")

    identifier: str | None = Field(
        default=None,
        max_length=1000,
        description="the entity's identifier (email, domain...), compared as the bulk path does",
    )
    external_id: str | None = Field(default=None, max_length=100)
    updated_after: AwareDatetime | None = Field(default=None, description="ISO 8601 with an offset")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


def quote_identifier(name: str) -> str:
    """A registry name as a Postgres identifier; only plain lower-case names are taken."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


@cache
def rendered(query: str, table: str, identifier: str) -> str:
    """``sql/queries/<query>.sql`` for one entity's table and identifier column."""
    return (
        sql.postgres(query)
        .replace("{table}", quote_identifier(table))
        .replace("{identifier}", quote_identifier(identifier))
    )


def _class_name(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def stored_columns(entity: Entity) -> dict[str, str]:
    """Each field's column: a reference (an opportunity's ``contact_email``) is
    stored as the id it resolves to (``contact_id``)."""
    return {
        name: entity.references[name].column if name in entity.references else name
        for name in entity.fields
    }


def _stored_model(entity: Entity) -> type[BaseModel]:
    """The entity as the API returns it: its id, its columns, and when it was written."""
    hints = entity.model.model_fields
    fields: dict[str, Any] = {"id": (int, ...)}
    for name, column in stored_columns(entity).items():
        fields[column] = (int | None, None) if column != name else (hints[name].annotation, None)
    fields |= {"created_at": (datetime, ...), "updated_at": (datetime, ...)}
    return create_model(_class_name(entity.name), **fields)


def _fields_model(entity: Entity) -> type[BaseModel]:
    """A create or PATCH body: the entity's fields, any of them (null clears one)."""
    hints = entity.model.model_fields
    fields: dict[str, Any] = {name: (hints[name].annotation, None) for name in entity.fields}
    return create_model(
        f"{_class_name(entity.name)}Fields", __config__=ConfigDict(extra="forbid"), **fields
    )


def _page_model(entity: Entity, stored: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"{_class_name(entity.name)}Page",
        data=(list[stored], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, Field(description="pass as `cursor` for the next page")),
    )


class EntityApi:
    """The routes of one entity: list, get, create, update (PATCH) and delete."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.path = f"/v1/{entity.plural}"
        self.stored = _stored_model(entity)
        self._columns = list(stored_columns(entity).values())
        self.body = _fields_model(entity)
        self.page = _page_model(entity, self.stored)
        table, identifier = entity.table, entity.identifier
        self._list_sql = rendered("entity_list", table, identifier)
        self._get_sql = rendered("entity_get", table, identifier)
        self._by_key_sql = rendered("entity_by_key", table, identifier)

    def routes(self) -> list[Route]:
        one = self.path + "/{entity_id}"
        return [
            Route(self.path, self.list, methods=["GET"]),
            Route(self.path, self.create, methods=["POST"]),
            Route(one, self.get, methods=["GET"]),
            Route(one, self.update, methods=["PATCH"]),
            Route(one, self.delete, methods=["DELETE"]),
        ]

    # --- reading -------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        resources, account = await caller(request)
        params = dict(request.query_params)
        custom = {k[len(_CUSTOM) :]: v for k, v in params.items() if k.startswith(_CUSTOM)}
        if "" in custom:
            raise ValidationFailed(
                "the filters are invalid", [{"loc": ["query", _CUSTOM], "msg": "name a field"}]
            )
        filters = parse(
            EntityFilters,
            {k: v for k, v in params.items() if not k.startswith(_CUSTOM)},
            "the filters are invalid",
        )
        after = ENTITIES_CURSOR.decode(filters.cursor)[0] if filters.cursor else 0
        key = self._key(filters.identifier) if filters.identifier is not None else None
        records = await resources.store.pool.fetch(
            self._list_sql,
            account,
            key,
            filters.external_id,
            filters.updated_after,
            custom or None,
            {k: _scalar(v) for k, v in custom.items()} or None,
            after,
            filters.limit,
        )
        cursor = None
        if len(records) == filters.limit:
            cursor = ENTITIES_CURSOR.encode((records[-1]["id"],))
        return JsonResponse({"data": [self._view(r) for r in records], "next_cursor": cursor})

    async def get(self, request: Request) -> Response:
        resources, account = await caller(request)
        record = await self._fetch(resources, account, _entity_id(request, self.entity))
        return JsonResponse(self._view(record))

    def _key(self, value: str) -> str:
        """The identifier as the bulk path keys it (normalised, lower case), or 422."""
        identifier = self.entity.identifier
        prepared = self.entity.reader(ActionOptions(unmapped="ignore"), "update").prepare(
            {identifier: value}
        )
        if isinstance(prepared, RowProblem):
            raise ValidationFailed(
                "the filters are invalid",
                [
                    {
                        "loc": ["query", "identifier"],
                        "msg": prepared.message,
                        "type": prepared.reason,
                    }
                ],
            )
        return prepared.key

    async def _fetch(self, resources: ApiResources, account: str, entity_id: int) -> Any:
        record = await resources.store.pool.fetchrow(self._get_sql, entity_id, account)
        if record is None:
            raise NotFound(f"no such {self.entity.name}")
        return record

    def _view(self, record: Any) -> dict[str, Any]:
        view = {"id": record["id"], **{c: record[c] for c in self._columns}}
        view["created_at"], view["updated_at"] = record["created_at"], record["updated_at"]
        return view

    # --- writing -------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        resources, account = await caller(request)
        row = await self._row(request)
        await self._write(resources, account, "create", row, match_on=None)
        # The row was valid (it was created): its key is the one the agents matched.
        prepared = self.entity.reader(ActionOptions(), "create").prepare(row)
        assert not isinstance(prepared, RowProblem)
        record = await resources.store.pool.fetchrow(self._by_key_sql, account, prepared.key)
        if record is None:
            raise Conflict(
                f"the {self.entity.name} was created, then deleted by another write",
                code="gone",
            )
        return JsonResponse(
            self._view(record),
            status_code=201,
            headers={"Location": f"{self.path}/{record['id']}"},
        )

    async def update(self, request: Request) -> Response:
        resources, account = await caller(request)
        entity_id = _entity_id(request, self.entity)
        row = await self._row(request)
        await self._write(resources, account, "update", {**row, MATCH_ID: entity_id}, MATCH_ID)
        return JsonResponse(self._view(await self._fetch(resources, account, entity_id)))

    async def delete(self, request: Request) -> Response:
        resources, account = await caller(request)
        entity_id = _entity_id(request, self.entity)
        await self._write(resources, account, "delete", {MATCH_ID: entity_id}, MATCH_ID)
        return Response(status_code=204)

    async def _row(self, request: Request) -> dict[str, Any]:
        """The body: a JSON object of the entity's fields; their values are the agents' to check."""
        body = await read_json(request, constants.MAX_ROW_BYTES)
        if not isinstance(body, dict):
            raise ValidationFailed(
                f"the body must be a JSON object of {self.entity.name} fields",
                [{"loc": ["body"], "msg": "not an object"}],
            )
        unknown = [key for key in body if key not in self.entity.fields]
        if unknown:
            raise ValidationFailed(
                f"the body names fields a {self.entity.name} does not have",
                [{"loc": ["body", key], "msg": "unknown field"} for key in unknown[:50]],
            )
        return body

    async def _write(
        self,
        resources: ApiResources,
        account: str,
        action: str,
        row: dict[str, Any],
        match_on: str | None,
    ) -> Operation:
        """Submit ``row`` as a one-row action, wait for it, and return what it did (or raise)."""
        created = await resources.submitter.submit_rows(
            account, self.entity.name, action, ActionOptions(match_on=match_on), [row]
        )
        action_id = created.record["id"]
        ACTION_ID.set(str(action_id))
        status = await _settled(resources, account, action_id)
        found = await resources.store.pool.fetchrow(
            sql.postgres("chunk_ledger_first_row"), action_id
        )
        details: dict[str, Any] = {"action_id": str(action_id)}
        if found is None:  # no outcome recorded: cancelled before its row was read
            raise Conflict(f"the write ended {status} before it was applied", details)
        outcome, operation = CODES[found["code"]]
        if outcome is Outcome.SUCCEEDED and operation is not None:
            return operation
        reason, message, _ = found["problem"]
        details |= {"reason": reason, "message": message}
        if reason == "not_found":
            raise NotFound(f"no such {self.entity.name}", details)
        if reason == "already_exists":
            raise Conflict(message, details, code="already_exists")
        if reason in _SERVER_REASONS:
            raise Unavailable("the write could not be applied; retry later", details)
        if outcome is Outcome.SKIPPED:
            raise Conflict(message, details, code="row_skipped")
        raise ValidationFailed(message, details, code="row_failed")


async def _settled(resources: ApiResources, account: str, action_id: uuid.UUID) -> str:
    """The action's terminal status, from the change stream; 504 after the write timeout."""
    hub = resources.live
    assert hub is not None, "the API was built without a change stream"
    subscriber = hub.join(account)
    try:
        current = await hub.follow(subscriber, action_id)
        if current is None:  # we just created it for this account
            raise Unavailable("the write's action could not be followed; retry later")
        async with asyncio.timeout(resources.entity_write_timeout):
            while True:
                for event in await subscriber.next():
                    if event.terminal:
                        return event.status
    except TimeoutError:
        raise WriteTimeout(
            f"the write was not applied within {resources.entity_write_timeout:g} s; "
            f"bulk action {action_id} still holds it",
            {"action_id": str(action_id)},
        ) from None
    finally:
        hub.leave(subscriber)


def _entity_id(request: Request, entity: Entity) -> int:
    raw = request.path_params["entity_id"]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _ID_MAX:
        raise NotFound(f"no such {entity.name}")
    return int(raw)


def _scalar(value: str) -> Any:
    """A custom-field filter value as the JSON scalar it spells (5, true, null), else the text."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return parsed if not isinstance(parsed, dict | list | str) else value


#: One per registered entity, in registry order.
ENTITY_APIS: dict[str, EntityApi] = {name: EntityApi(e) for name, e in ENTITIES.items()}
entity_routes: list[Route] = [route for api in ENTITY_APIS.values() for route in api.routes()]
