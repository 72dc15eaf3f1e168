"""The company entity: identified by its web domain, normalised."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from schemas.contact import CustomFields, ExternalId, Text

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalise_domain(value: str) -> str:
    """``https://www.Example.com/about`` -> ``example.com``."""
    host = value.strip().lower()
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = host.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].rstrip(".")
    host = host.removeprefix("www.")
    if not _DOMAIN.match(host):
        raise ValueError("not a valid domain")
    return host


class CompanyRow(BaseModel):
    """One company as a bulk action row gives it; absent fields stay unchanged.

    The field order is the staging order of ``sql/queries/companies_apply.sql``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: int | None = Field(default=None, ge=1)
    domain: Annotated[str, AfterValidator(normalise_domain)] | None = None
    external_id: ExternalId | None = None
    name: Text | None = None
    industry: Annotated[str, StringConstraints(max_length=100)] | None = None
    employee_count: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    custom_fields: CustomFields | None = None
