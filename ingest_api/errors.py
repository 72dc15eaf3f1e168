"""API errors as types, rendered once into one body shape.

Every error response is ``{"error": {"code": ..., "message": ..., "details": ...}}``
with the HTTP status the class carries.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bulkflow import constants
from bulkflow.retry import Failure, classify

log = logging.getLogger(__name__)


class JsonResponse(JSONResponse):
    """JSON via orjson: UUIDs and datetimes serialise natively; decimals (an
    opportunity's amount) as strings, so no digit is lost to a float."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_decimal)


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ApiError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.extra_headers = headers or {}
        if code is not None:
            self.code = code  # type: ignore[misc]  # a more specific code, per instance


class InvalidJson(ApiError):
    code = "invalid_json"


class InvalidCsv(ApiError):
    status = 422

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, details, code=code)  # the reader's own code


class InvalidMultipart(ApiError):
    code = "invalid_multipart"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class IdempotencyConflict(ApiError):
    status = 409
    code = "idempotency_conflict"


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"
    headers = {"Connection": "close"}


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response's body (the OpenAPI document's ``ErrorBody``)."""

    error: ErrorDetail


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JsonResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status,
        headers={**exc.headers, **exc.extra_headers},
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 etc. in the same shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JsonResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def body_timeout(request: Request, exc: Exception) -> Response:
    """The client stopped sending its body (bulkflow.http_timeouts.BodyIdleTimeout)."""
    return await api_error(request, RequestTimeout(str(exc)))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug (500, logged with its traceback) or an outage (503), answered in the one shape."""
    if classify(exc) is Failure.UNAVAILABLE:
        log.warning("%s %s: unreachable dependency (%r)", request.method, request.url.path, exc)
        return JsonResponse(
            error_body("unavailable", "a service bulkflow depends on is unreachable; retry later"),
            status_code=503,
            headers={"Retry-After": str(int(constants.RETRY_AFTER_UNAVAILABLE))},
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JsonResponse(
        error_body("internal_error", "something went wrong on our side; it has been logged"),
        status_code=500,
    )
