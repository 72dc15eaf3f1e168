"""The contact entity's fields and their validation rules."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from bulkflow import constants
from schemas.column_rules import ColumnCheck

# Pragmatic syntax check (RFC 5322 allows more, mail systems do not): one @,
# no spaces, a dotted domain with a 2+ letter top level.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")


def _email(value: str) -> str:
    if not _EMAIL.match(value) or ".." in value:
        raise ValueError("not a valid email address")
    return value


#: _EMAIL for printable ASCII (a character class excludes "@" and the space,
#: and "." after the last dot), in RE2's syntax for Arrow's kernel.
_PRINTABLE = r"\x21-\x3f\x41-\x7e"
_EMAIL_ASCII = rf"^[{_PRINTABLE}]{{1,64}}@[{_PRINTABLE}]+\.[\x21-\x2d\x2f-\x3f\x41-\x7e]{{2,}}$"


def _email_column(values: pa.StringArray) -> pa.BooleanArray:
    """_email on a column, for printable ASCII values (false for the others: the
    model decides them). One RE2 pass, not a kernel per condition: RE2 compiles
    on every call, but a call reads a run of chunks, and the 17 kernels cost
    three times the one regex on 20,000 emails."""
    valid = pc.match_substring_regex(values, _EMAIL_ASCII)
    return pc.and_not(valid, pc.match_substring(values, ".."))


def deeper_than(value: Any, levels: int) -> bool:
    """Whether objects and arrays nest in ``value`` more than ``levels`` deep (it is level 1).

    Iterative: a value nested past the interpreter's recursion limit is an
    answer, not a RecursionError.
    """
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > levels:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def _custom_fields(value: dict[str, Any]) -> dict[str, Any]:
    if deeper_than(value, constants.MAX_CUSTOM_FIELDS_DEPTH):
        raise ValueError(
            f"objects and arrays nest deeper than {constants.MAX_CUSTOM_FIELDS_DEPTH} levels"
        )
    return value


#: Anything JSON holds, nested at most MAX_CUSTOM_FIELDS_DEPTH levels.
CustomFields = Annotated[dict[str, Any], AfterValidator(_custom_fields)]
Email = Annotated[
    str, StringConstraints(max_length=254), AfterValidator(_email), ColumnCheck(_email_column)
]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(max_length=200)]
Name = Annotated[str, StringConstraints(max_length=100)]

ContactStatus = Literal["lead", "prospect", "customer", "churned", "archived"]


class ContactRow(BaseModel):
    """One contact as a bulk action row gives it; absent fields stay unchanged.

    The field order is the staging order of ``sql/queries/contacts_apply.sql``
    (``id`` only matches, it is never written).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: int | None = Field(default=None, ge=1)
    email: Email | None = None
    external_id: ExternalId | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    company: Text | None = None
    job_title: Text | None = None
    status: ContactStatus | None = None
    lead_score: Annotated[int, Field(ge=0, le=100)] | None = None
    custom_fields: CustomFields | None = None


#: A CSV cell lists tags with this between them (a JSON row gives an array, or the same).
TAG_SEPARATOR = ";"
MAX_TAGS = 100  # per row
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _split_tags(value: Any) -> Any:
    """``"vip; Churn risk"`` -> ``["vip", "Churn risk"]``; blanks between separators dropped."""
    if isinstance(value, str):
        return [tag for tag in (t.strip() for t in value.split(TAG_SEPARATOR)) if tag]
    return value


def _distinct_tags(tags: list[str]) -> list[str]:
    """The first spelling of each tag, compared without case, in the order given."""
    seen: dict[str, str] = {}
    for tag in tags:
        seen.setdefault(tag.lower(), tag)
    return list(seen.values())


Tags = Annotated[
    list[Tag],
    BeforeValidator(_split_tags),
    Field(min_length=1, max_length=MAX_TAGS),
    AfterValidator(_distinct_tags),
]


class ContactTagsRow(BaseModel):
    """A row of ``add_tags`` / ``remove_tags``: which contact, and the tags.

    The field order is the staging order of ``sql/queries/contacts_add_tags.sql``
    and ``contacts_remove_tags.sql``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: int | None = Field(default=None, ge=1)
    email: Email | None = None
    external_id: ExternalId | None = None
    tags: Tags | None = None
