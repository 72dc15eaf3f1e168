"""HTTP request and response bodies of the bulk action API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Json

from bulkflow import constants
from schemas.action import ACTIONS
from schemas.entity import ENTITIES

# Importable from here, as before they moved to schemas.options.
from schemas.options import ActionOptions as ActionOptions
from schemas.options import column_key as column_key
from schemas.webhook import CallbackUrl

if TYPE_CHECKING:  # a Literal made from a registry is a runtime value: str to type checkers
    EntityName = str
    ActionKind = str
else:
    #: The registered entities' names (schemas.entity.ENTITIES): validated, and
    #: documented as an enum.
    EntityName = Literal[tuple(ENTITIES)]
    #: The registered action types' names (schemas.action.ACTIONS).
    ActionKind = Literal[tuple(ACTIONS)]
Status = Literal[
    "scheduled", "queued", "running", "throttled", "paused", "completed", "cancelled", "failed"
]
STATUSES: tuple[Status, ...] = get_args(Status)

ROW_NO_MAX = 2**32 - 1  # ClickHouse keeps row_no as UInt32 and would wrap a larger number
#: A 1-based data row number, as far as ClickHouse can hold it.
RowNo = Annotated[int, Field(ge=1, le=ROW_NO_MAX)]


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
