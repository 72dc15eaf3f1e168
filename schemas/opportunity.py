"""The opportunity entity: a deal, identified by the caller's external id."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.contact import CustomFields, Email, ExternalId, Text
from schemas.options import column_key

OpportunityStage = Literal[
    "prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"
]


def _stage_key(value: Any) -> Any:
    """``Closed Won`` and ``closed-won`` are ``closed_won``, as column names are compared."""
    return column_key(value) if isinstance(value, str) else value


#: Money: at most 12 digits before the point and 2 after, never negative (numeric(14, 2)).
Amount = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]


class OpportunityRow(BaseModel):
    """One opportunity as a bulk action row gives it; absent fields stay unchanged.

    The field order is the staging order of ``sql/queries/opportunities_apply.sql``.
    ``contact_email`` names a contact of the account by its email; the table
    keeps that contact's id (``contact_id``).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: int | None = Field(default=None, ge=1)
    external_id: ExternalId | None = None
    name: Text | None = None
    amount: Amount | None = None
    stage: Annotated[OpportunityStage, BeforeValidator(_stage_key)] | None = None
    close_date: date | None = None
    contact_email: Email | None = None
    custom_fields: CustomFields | None = None
