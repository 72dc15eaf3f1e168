"""HTTP request and response bodies of the bulk action API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Json

from bulkflow import constants

EntityName = Literal["contact"]
ActionKind = Literal["create", "update", "upsert", "delete"]
Status = Literal["queued", "running", "completed", "failed"]


class ActionOptions(BaseModel):
    """How rows are read and applied; stored with the action, carried by every chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Source column -> entity field.
    mapping: dict[str, str] = Field(default_factory=dict)
    #: An empty value (or an absent JSON key) leaves the stored value unchanged.
    ignore_empty: bool = True
    #: A CSV cell equal to this clears the stored value (JSON uses null).
    clear_token: str | None = None
    #: Columns that are neither fields nor mapped: kept in custom_fields, or ignored.
    unmapped: Literal["custom_fields", "ignore"] = "custom_fields"


class BulkActionRequest(BaseModel):
    """``POST /v1/bulk-actions`` with a JSON body."""

    model_config = ConfigDict(extra="forbid")

    entity: EntityName
    action: ActionKind
    options: ActionOptions = Field(default_factory=ActionOptions)
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=constants.MAX_JSON_ROWS)


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

    def options(self) -> ActionOptions:
        return ActionOptions(
            mapping=self.mapping or {},
            ignore_empty=self.ignore_empty,
            clear_token=self.clear_token,
            unmapped=self.unmapped,
        )


class Counts(BaseModel):
    succeeded: int
    failed: int
    skipped: int


class Progress(BaseModel):
    processed: int
    total: int | None
    percent: float | None


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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BulkActionStats(BaseModel):
    """Counts recomputed from the per-row outcomes in ClickHouse."""

    id: UUID
    recorded_rows: int
    counts: Counts
    operations: dict[str, int]
    reasons: dict[str, int]
