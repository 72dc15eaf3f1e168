"""Completion webhooks: the callback URL an action names, and its delivery attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field

from bulkflow import constants

DeliveryStatus = Literal["pending", "delivered", "failed", "given_up"]


def _http_url(value: str) -> str:
    """An absolute http(s) URL with a host, without credentials, spaces or controls.

    Where it points is checked by the API (``ingest_api/callbacks.py``): a
    private address is refused unless the deployment allows it.
    """
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    parts.port  # noqa: B018  # raises ValueError on a port out of range or not a number
    return value


#: Where a finished action is POSTed (``callback_url``).
CallbackUrl = Annotated[
    str,
    Field(
        max_length=constants.CALLBACK_URL_MAX_CHARS,
        pattern=r"^[hH][tT][tT][pP][sS]?://",
        description="POSTed the action, signed, when it ends (completed, failed or cancelled)",
    ),
    AfterValidator(_http_url),
]


class WebhookDelivery(BaseModel):
    """One attempt to deliver an action to its callback_url."""

    attempt: int
    status: DeliveryStatus
    attempted_at: datetime | None
    response_status: int | None = Field(description="the receiver's HTTP status, if it answered")
    error: str | None
    next_attempt_at: datetime | None = Field(description="while pending: when it is due")
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """``GET /v1/bulk-actions/{id}/deliveries``: every attempt, in order.

    At most 32 with the default backoff, which is why there is no cursor.
    """

    data: list[WebhookDelivery]
