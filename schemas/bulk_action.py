"""HTTP request and response bodies of the bulk action API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Json

from bulkflow import constants
from schemas.webhook import CallbackUrl

EntityName = Literal["contact", "company"]
ActionKind = Literal["create", "update", "upsert", "delete"]
Status = Literal[
    "scheduled", "queued", "running", "throttled", "paused", "completed", "cancelled", "failed"
]
STATUSES: tuple[Status, ...] = get_args(Status)

ROW_NO_MAX = 2**32 - 1  # ClickHouse keeps row_no as UInt32 and would wrap a larger number
#: A 1-based data row number, as far as ClickHouse can hold it.
RowNo = Annotated[int, Field(ge=1, le=ROW_NO_MAX)]


_SEPARATORS = re.compile(r"[\s_-]+")


def column_key(name: str) -> str:
    """What a column name is compared by: case, spaces, ``-`` and ``_`` aside.

    So the headers people write name the fields: "First Name", "first-name"
    and "FIRST_NAME" are all ``first_name``.
    """
    return _SEPARATORS.sub("_", name.strip().lower())


class ActionOptions(BaseModel):
    """How rows are read and applied; stored with the action, carried by every chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Source column -> entity field (both compared by :func:`column_key`).
    mapping: dict[str, str] = Field(default_factory=dict)
    #: An empty value (or an absent JSON key) leaves the stored value unchanged.
    ignore_empty: bool = True
    #: A CSV cell equal to this clears the stored value (JSON uses null).
    clear_token: str | None = None
    #: Columns that are neither fields nor mapped: kept in custom_fields, or ignored.
    unmapped: Literal["custom_fields", "ignore"] = "custom_fields"
    #: The field rows are matched on: the entity's identifier (default), or
    #: "external_id", or "id".
    match_on: str | None = None

    def normalised_mapping(self) -> dict[str, str]:
        """The mapping by :func:`column_key`, as headers are compared."""
        return {column_key(k): column_key(v) for k, v in self.mapping.items()}


class BulkActionRequest(BaseModel):
    """``POST /v1/bulk-actions`` with a JSON body."""

    model_config = ConfigDict(extra="forbid")

    entity: EntityName
    action: ActionKind
    options: ActionOptions = Field(default_factory=ActionOptions)
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=constants.MAX_JSON_ROWS)
    #: Run at this time (ISO 8601 with an offset); in the past means now.
    scheduled_for: AwareDatetime | None = None
    callback_url: CallbackUrl | None = None


class CsvParameters(BaseModel):
    """``POST /v1/bulk-actions`` with a CSV body: the query string (or form fields)."""

    model_config = ConfigDict(extra="forbid")

    entity: EntityName
    action: ActionKind
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    #: JSON object, source column -> field.
    mapping: Json[dict[str, str]] | None = None
    ignore_empty: bool = True
    clear_token: str | None = None
    unmapped: Literal["custom_fields", "ignore"] = "custom_fields"
    match_on: str | None = None
    scheduled_for: AwareDatetime | None = None
    callback_url: CallbackUrl | None = None

    def options(self) -> ActionOptions:
        return ActionOptions(
            mapping=self.mapping or {},
            ignore_empty=self.ignore_empty,
            clear_token=self.clear_token,
            unmapped=self.unmapped,
            match_on=self.match_on,
        )


class Counts(BaseModel):
    succeeded: int
    failed: int
    skipped: int


class Progress(BaseModel):
    processed: int
    total: int | None
    percent: float | None
    rows_per_second: float | None  # since the first rows were processed
    eta_seconds: float | None  # at the current rate; None once finished


class BulkActionView(BaseModel):
    id: UUID
    status: Status
    entity: str
    action: str
    source: str
    options: dict[str, Any]
    total_rows: int | None
    counts: Counts
    progress: Progress
    error: dict[str, Any] | None
    #: While throttled: when the account's allowance lets rows through again.
    resumes_at: datetime | None
    scheduled_for: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    callback_url: str | None = None


class ReasonCount(BaseModel):
    reason: str
    rows: int


class BulkActionStats(BaseModel):
    """Counts recomputed from the per-row outcomes in ClickHouse."""

    id: UUID
    recorded_rows: int
    counts: Counts
    operations: dict[str, int]
    reasons: dict[str, int]
    top_failure_reasons: list[ReasonCount]
    top_skip_reasons: list[ReasonCount]


class ListFilters(BaseModel):
    """``GET /v1/bulk-actions`` query parameters."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    entity: EntityName | None = None
    action: ActionKind | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class LogFilters(BaseModel):
    """``GET /v1/bulk-actions/{id}/logs`` query parameters."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded", "failed", "skipped"] | None = None
    reason: str | None = None
    row_from: RowNo = 1
    row_to: RowNo = ROW_NO_MAX
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None


class RowLog(BaseModel):
    row_no: int
    outcome: str
    operation: str | None
    reason: str | None
    message: str | None
    related_row: int | None
    key: str
    processed_at: datetime


class Reschedule(BaseModel):
    """``PATCH /v1/bulk-actions/{id}``: move a scheduled action that has not started."""

    model_config = ConfigDict(extra="forbid")

    scheduled_for: AwareDatetime
