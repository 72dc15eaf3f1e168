"""HTTP handlers of the bulk action API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from ingest_api.actions import ActionStore, view
from ingest_api.auth import account_of
from ingest_api.csv_reader import CsvFormat, CsvReader, CsvRejected
from ingest_api.errors import (
    InvalidCsv,
    InvalidJson,
    JsonResponse,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from ingest_api.submission import Submitter
from schemas.bulk_action import BulkActionRequest, BulkActionStats, Counts, CsvParameters

_MAX_ERRORS = 50  # validation errors listed in one response
_UPLOAD_BLOCK = 64 * 1024  # bytes read at a time from a multipart file part


@dataclass(frozen=True)
class ApiResources:
    store: ActionStore
    submitter: Submitter
    clickhouse: ClickHouse


def _resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


async def create_bulk_action(request: Request) -> Response:
    account = account_of(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        record = await _submit_json(request, account)
    elif media_type == "text/csv":
        params = _csv_parameters(dict(request.query_params))
        record = await _submit_csv(request, account, params, request.stream())
    elif media_type == "multipart/form-data":
        record = await _submit_multipart(request, account)
    else:
        raise UnsupportedMediaType(
            "send application/json, text/csv or multipart/form-data with a 'file' part",
            {"content_type": media_type or None},
        )
    fresh = await _resources(request).store.get(account, record["id"])
    body = view(fresh or record).model_dump(mode="json")
    return JsonResponse(body, status_code=202, headers={"Location": _location(record["id"])})


async def get_bulk_action(request: Request) -> Response:
    account = account_of(request)
    record = await _resources(request).store.get(account, _action_id(request))
    if record is None:
        raise NotFound("no such bulk action")
    return JsonResponse(view(record).model_dump(mode="json"))


async def get_bulk_action_stats(request: Request) -> Response:
    account = account_of(request)
    action_id = _action_id(request)
    resources = _resources(request)
    if await resources.store.get(account, action_id) is None:
        raise NotFound("no such bulk action")
    rows = await resources.clickhouse.rows(
        "action_stats", {"account_id": account, "action_id": action_id}
    )
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    operations: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for outcome, operation, reason, count in rows:
        counts[outcome] += count
        if operation:
            operations[operation] = operations.get(operation, 0) + count
        if reason:
            reasons[reason] = reasons.get(reason, 0) + count
    stats = BulkActionStats(
        id=action_id,
        recorded_rows=sum(counts.values()),
        counts=Counts(**counts),
        operations=operations,
        reasons=dict(sorted(reasons.items(), key=lambda item: -item[1])),
    )
    return JsonResponse(stats.model_dump(mode="json"))


async def health(request: Request) -> Response:
    return JsonResponse({"status": "ok"})


def _location(action_id: uuid.UUID) -> str:
    return f"/v1/bulk-actions/{action_id}"


def _action_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["action_id"])
    except ValueError:
        raise NotFound("no such bulk action") from None


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors][
        :_MAX_ERRORS
    ]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a JSON body may have at most {limit} bytes")
    body = bytearray()
    async for block in request.stream():
        body += block
        if len(body) > limit:
            raise PayloadTooLarge(f"a JSON body may have at most {limit} bytes")
    return bytes(body)


async def _submit_json(request: Request, account: str) -> Any:
    raw = await _read_body(request, constants.MAX_JSON_BODY_BYTES)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from None
    try:
        body = BulkActionRequest.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("the bulk action is invalid", _validation_details(exc)) from None
    return await _resources(request).submitter.submit_rows(
        account, body.entity, body.action, body.options, body.rows
    )


def _csv_parameters(values: dict[str, Any]) -> CsvParameters:
    try:
        return CsvParameters.model_validate(values)
    except ValidationError as exc:
        raise ValidationFailed("the CSV parameters are invalid", _validation_details(exc)) from None


async def _submit_csv(
    request: Request, account: str, params: CsvParameters, body: AsyncIterator[bytes]
) -> Any:
    fmt = CsvFormat(encoding=params.encoding, delimiter=params.delimiter)
    try:
        async with CsvReader(body, fmt, constants.ROWS_PER_CHUNK) as reader:
            return await _resources(request).submitter.submit_csv(
                account, params.entity, params.action, params.options(), reader
            )
    except CsvRejected as exc:
        raise InvalidCsv(exc.code, exc.message) from None


async def _submit_multipart(request: Request, account: str) -> Any:
    async with request.form(max_files=1, max_fields=20) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed(
                "a multipart upload needs a 'file' part",
                [{"loc": ["file"], "msg": "Field required", "type": "missing"}],
            )
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        params = _csv_parameters(fields)

        async def blocks() -> AsyncIterator[bytes]:
            while block := await upload.read(_UPLOAD_BLOCK):
                yield block

        return await _submit_csv(request, account, params, blocks())


routes = [
    Route("/healthz", health, methods=["GET"]),
    Route("/v1/bulk-actions", create_bulk_action, methods=["POST"]),
    Route("/v1/bulk-actions/{action_id}", get_bulk_action, methods=["GET"]),
    Route("/v1/bulk-actions/{action_id}/stats", get_bulk_action_stats, methods=["GET"]),
]
