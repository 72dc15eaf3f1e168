"""Opaque cursors: the position after the last item of a page, base64url of JSON.

A cursor comes back from the client, so it is input like any other: each kind
has a typed shape, and one that does not fit is a 422, never a failure deeper down.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Generic, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter

from ingest_api.errors import ValidationFailed
from schemas.bulk_action import RowNo

Position = TypeVar("Position")

# Strict: a cursor is only what we wrote, so no coercion (``true`` is not row 1).
_STRICT = ConfigDict(strict=True)


class Cursor(Generic[Position]):
    """One kind of cursor: its position's shape, encoded and decoded."""

    def __init__(self, shape: TypeAdapter[Position]) -> None:
        self._shape = shape

    def encode(self, position: Position) -> str:
        return base64.urlsafe_b64encode(self._shape.dump_json(position)).decode().rstrip("=")

    def decode(self, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            return self._shape.validate_json(raw)
        # Bad base64 (binascii.Error), non-ASCII text, a shape that does not fit
        # (ValidationError): all are ValueErrors.
        except ValueError:
            raise ValidationFailed(
                "the cursor is not valid", [{"loc": ["cursor"], "msg": "not a cursor"}]
            ) from None


#: ``GET /v1/bulk-actions``: the created_at and id of the last action on the page.
ACTIONS_CURSOR: Cursor[tuple[datetime, UUID]] = Cursor(
    TypeAdapter(tuple[AwareDatetime, UUID], config=_STRICT)
)

#: ``GET /v1/bulk-actions/{id}/logs``: the row_no of the last row on the page.
LOGS_CURSOR: Cursor[tuple[int]] = Cursor(TypeAdapter(tuple[RowNo], config=_STRICT))

#: ``GET /v1/<plural>`` (the entity API): the id of the last entity on the page.
ENTITIES_CURSOR: Cursor[tuple[int]] = Cursor(
    TypeAdapter(tuple[Annotated[int, Field(ge=1, le=2**63 - 1)]], config=_STRICT)
)
