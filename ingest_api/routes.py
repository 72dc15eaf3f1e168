"""HTTP handlers of the bulk action API; every one acts for the caller's account."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bulkflow import constants, metrics
from bulkflow.logs import ACCOUNT_ID, ACTION_ID
from ingest_api.actions import ActionStore, Created, Idempotency, view
from ingest_api.auth import Authenticator
from ingest_api.csv_reader import CsvFormat, CsvReader, CsvRejected
from ingest_api.errors import (
    InvalidCsv,
    InvalidJson,
    JsonResponse,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from ingest_api.multipart_upload import MultipartUpload
from ingest_api.pagination import ACTIONS_CURSOR, LOGS_CURSOR
from ingest_api.reports import Reports
from ingest_api.request_limits import RequestLimits
from ingest_api.submission import Submitter
from ingest_api.validation import parse
from schemas.bulk_action import (
    STATUSES,
    BulkActionRequest,
    CsvParameters,
    ListFilters,
    LogFilters,
)
from schemas.contact import deeper_than

if TYPE_CHECKING:
    from ingest_api.live import LiveHub

_MAX_IDEMPOTENCY_KEY = 255  # characters
#: Large JSON bodies decoded and submitted at once: the rows of each, as
#: objects, hold ~10-20x the body until they are published.
_LARGE_JSON = anyio.Semaphore(constants.LARGE_JSON_AT_ONCE)


@dataclass(frozen=True)
class ApiResources:
    auth: Authenticator
    store: ActionStore
    submitter: Submitter
    reports: Reports
    limits: RequestLimits
    rows_per_minute: int  # the default row allowance, for ETAs
    live: LiveHub | None = None  # the change stream's subscribers (ingest_api/live.py)
    #: Seconds an entity API write waits for its one-row action (504 beyond).
    entity_write_timeout: float = constants.ENTITY_WRITE_TIMEOUT


def _resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


async def caller(request: Request) -> tuple[ApiResources, str]:
    """Who calls (401 otherwise), within their request allowance (429 otherwise).

    The client address's allowance comes first: a flood of bad keys is
    refused before it costs database lookups.
    """
    resources = _resources(request)
    await resources.limits.check_address(request)
    try:
        account = await resources.auth.account(request)
    except Unauthorized:
        await resources.limits.auth_failed(request)
        raise
    ACCOUNT_ID.set(account)  # in this request's log records (its task's own context)
    await resources.limits.check(request, account)
    return resources, account


# --- writing -------------------------------------------------------------


async def create_bulk_action(request: Request) -> Response:
    resources, account = await caller(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        created = await _submit_json(request, resources, account)
    elif media_type == "text/csv":
        params = parse(CsvParameters, dict(request.query_params), "the CSV parameters are invalid")
        stream = _counted(request.stream(), "csv")
        created = await _submit_csv(request, resources, account, params, stream)
    elif media_type == "multipart/form-data":
        created = await _submit_multipart(request, resources, account)
    else:
        raise UnsupportedMediaType(
            "send application/json, text/csv or multipart/form-data with a 'file' part",
            {"content_type": media_type or None},
        )
    record = await resources.store.get(account, created.record["id"]) or created.record
    ACTION_ID.set(str(record["id"]))
    if not created.replayed:
        metrics.ACTIONS_SUBMITTED.labels(record["entity"], record["action"]).inc()
    headers = {"Location": f"/v1/bulk-actions/{record['id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    body = view(record, resources.rows_per_minute).model_dump(mode="json")
    return JsonResponse(body, status_code=202, headers=headers)


def _idempotency(request: Request, fingerprint: bytes) -> Idempotency | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            "the Idempotency-Key header must have 1 to 255 characters",
            [{"loc": ["header", "Idempotency-Key"], "msg": "invalid length"}],
        )
    return Idempotency(key, hashlib.sha256(fingerprint).digest())


async def _read_body(request: Request, limit: int) -> bytearray:
    declared = request.headers.get("content-length")
    too_large = f"a JSON body may have at most {limit:,} bytes"
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large, {"limit_bytes": limit})
    body = bytearray()
    async for block in request.stream():
        body += block
        if len(body) > limit:
            raise PayloadTooLarge(too_large, {"limit_bytes": limit})
    return body


def _loads(raw: bytes | bytearray) -> Any:
    """JSON, nested at most MAX_JSON_DEPTH levels (400 if not JSON, 422 if deeper)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also beyond orjson's own 1,024 levels
        raise InvalidJson(f"the body is not valid JSON: {exc}") from None
    if deeper_than(data, constants.MAX_JSON_DEPTH):
        raise ValidationFailed(
            f"the body nests objects and arrays deeper than {constants.MAX_JSON_DEPTH} levels",
            [{"loc": [], "msg": f"at most {constants.MAX_JSON_DEPTH} levels", "type": "depth"}],
        )
    return data


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read only up to ``limit`` bytes (413 beyond, 400 if not JSON).

    Call it after :func:`caller`: a body is worth reading only for a known,
    allowed caller. For small bodies: it decodes on the event loop.
    """
    return _loads(await _read_body(request, limit))


def _decode_bulk_action(raw: bytearray) -> tuple[BulkActionRequest, bytes]:
    """The request and its fingerprint; on a worker thread, all of the CPU work."""
    body = parse(BulkActionRequest, _loads(raw), "the bulk action is invalid")
    del raw[:]  # the rows are objects now: the bytes can go
    # As model_dump(mode="json") would write it, without copying every row first.
    # Without a callback_url, as before there was one: keys stay valid across the upgrade.
    unset = {"rows"} | ({"callback_url"} if body.callback_url is None else set())
    dumped = {**body.model_dump(mode="json", exclude=unset), "rows": body.rows}
    return body, orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)


async def _submit_json(request: Request, resources: ApiResources, account: str) -> Created:
    """Parsed and validated on a worker thread: the event loop serves others meanwhile."""
    raw = await _read_body(request, constants.MAX_JSON_BODY_BYTES)
    metrics.UPLOAD_BYTES.labels("json").inc(len(raw))
    large = len(raw) > constants.LARGE_JSON_BYTES
    async with _LARGE_JSON if large else contextlib.nullcontext():
        body, fingerprint = await anyio.to_thread.run_sync(_decode_bulk_action, raw)
        return await resources.submitter.submit_rows(
            account,
            body.entity,
            body.action,
            body.options,
            body.rows,
            _idempotency(request, fingerprint),
            body.scheduled_for,
            body.callback_url,
        )


async def _submit_csv(
    request: Request,
    resources: ApiResources,
    account: str,
    params: CsvParameters,
    body: AsyncIterator[bytes],
) -> Created:
    # A CSV is not hashed (it streams past): its key stands for its parameters.
    fingerprint = b"csv:" + orjson.dumps(
        params.model_dump(
            mode="json", exclude={"callback_url"} if not params.callback_url else None
        ),
        option=orjson.OPT_SORT_KEYS,
    )
    idempotency = _idempotency(request, fingerprint)
    if idempotency is not None:
        earlier = await resources.store.replay(account, idempotency)
        if earlier is not None:
            return earlier
    fmt = CsvFormat(encoding=params.encoding, delimiter=params.delimiter)
    try:
        async with CsvReader(body, fmt, constants.ROWS_PER_CHUNK) as reader:
            return await resources.submitter.submit_csv(
                account,
                params.entity,
                params.action,
                params.options(),
                reader,
                idempotency,
                params.scheduled_for,
                params.callback_url,
            )
    except CsvRejected as exc:
        raise InvalidCsv(exc.code, exc.message) from None


async def _submit_multipart(request: Request, resources: ApiResources, account: str) -> Created:
    """The option fields first, checked before a byte of the file is read; then the file."""
    upload = MultipartUpload(request.headers["content-type"], _counted(request.stream(), "csv"))
    params = parse(CsvParameters, await upload.fields(), "the CSV parameters are invalid")
    return await _submit_csv(request, resources, account, params, upload.file())


# --- reading -------------------------------------------------------------


async def list_bulk_actions(request: Request) -> Response:
    resources, account = await caller(request)
    filters = parse(ListFilters, dict(request.query_params), "the filters are invalid")
    after = ACTIONS_CURSOR.decode(filters.cursor) if filters.cursor else None
    records = await resources.store.page(account, filters, after)
    cursor = None
    if len(records) == filters.limit:
        last = records[-1]
        cursor = ACTIONS_CURSOR.encode((last["created_at"], last["id"]))
    return JsonResponse(
        {
            "data": [view(r, resources.rows_per_minute).model_dump(mode="json") for r in records],
            "next_cursor": cursor,
        }
    )


async def summary(request: Request) -> Response:
    resources, account = await caller(request)
    counts = await resources.store.summary(account)
    return JsonResponse(
        {"total": sum(counts.values()), "by_status": {s: counts.get(s, 0) for s in STATUSES}}
    )


async def get_bulk_action(request: Request) -> Response:
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    return JsonResponse(view(record, resources.rows_per_minute).model_dump(mode="json"))


async def get_bulk_action_stats(request: Request) -> Response:
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    stats = await resources.reports.stats(account, record["id"])
    return JsonResponse(stats.model_dump(mode="json"))


async def get_bulk_action_logs(request: Request) -> Response:
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    filters = parse(LogFilters, dict(request.query_params), "the filters are invalid")
    if "application/x-ndjson" in request.headers.get("accept", ""):
        return StreamingResponse(
            await prefetched(resources.reports.all_logs(account, record["id"], filters)),
            media_type="application/x-ndjson",
        )
    after = LOGS_CURSOR.decode(filters.cursor)[0] if filters.cursor else 0
    rows = await resources.reports.logs(account, record["id"], filters, after, filters.limit)
    cursor = LOGS_CURSOR.encode((rows[-1].row_no,)) if len(rows) == filters.limit else None
    return JsonResponse({"data": [r.model_dump(mode="json") for r in rows], "next_cursor": cursor})


async def get_failed_rows_csv(request: Request) -> Response:
    resources, account = await caller(request)
    record = await owned(request, resources, account)
    include = {part.strip() for part in request.query_params.get("include", "").split(",")}
    outcomes = ["failed", "skipped"] if "skipped" in include else ["failed"]
    return StreamingResponse(
        await prefetched(
            resources.reports.problem_rows_csv(
                account, record["id"], list(record["columns"]), outcomes
            )
        ),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{record["id"]}-failed-rows.csv"'},
    )


async def health(request: Request) -> Response:
    return JsonResponse({"status": "ok"})


async def owned(request: Request, resources: ApiResources, account: str) -> Any:
    """The action named in the path, if it is the caller's: otherwise 404, never 403."""
    try:
        action_id = uuid.UUID(request.path_params["action_id"])
    except ValueError:
        raise NotFound("no such bulk action") from None
    record = await resources.store.get(account, action_id)
    if record is None:
        raise NotFound("no such bulk action")
    ACTION_ID.set(str(action_id))
    return record


async def _counted(body: AsyncIterator[bytes], kind: str) -> AsyncIterator[bytes]:
    """The body, its bytes counted per block received (bulkflow_upload_bytes_total)."""
    counter = metrics.UPLOAD_BYTES.labels(kind)
    async for block in body:
        counter.inc(len(block))
        yield block


routes = [
    Route("/healthz", health, methods=["GET"]),
    Route("/v1/bulk-actions", create_bulk_action, methods=["POST"]),
    Route("/v1/bulk-actions", list_bulk_actions, methods=["GET"]),
    Route("/v1/bulk-actions/summary", summary, methods=["GET"]),
    Route("/v1/bulk-actions/{action_id}", get_bulk_action, methods=["GET"]),
    Route("/v1/bulk-actions/{action_id}/stats", get_bulk_action_stats, methods=["GET"]),
    Route("/v1/bulk-actions/{action_id}/logs", get_bulk_action_logs, methods=["GET"]),
    Route("/v1/bulk-actions/{action_id}/failed-rows.csv", get_failed_rows_csv, methods=["GET"]),
]


async def prefetched(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body with its first part fetched now, before the response starts.

    An error there (ClickHouse unavailable) is then still an error response;
    once the 200 and its headers are sent, it could only cut the body short.
    """
    first = await anext(body, None)

    async def resumed() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for part in body:
            yield part

    return resumed()
