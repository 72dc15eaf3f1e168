"""How an entity plugs in: validation, identifier, and the SQL that applies it.

An :class:`Entity` turns one input row into a :class:`Prepared` row (or a
:class:`RowProblem`) and names the SQL file that applies a set of prepared rows
in one statement. :class:`ModelEntity` implements it for any pydantic row model,
so adding an entity is a model, a table migration and an ``*_apply.sql`` file
(see "Adding an entity" in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from schemas.bulk_action import ActionOptions
from schemas.company import CompanyRow
from schemas.contact import ContactRow
from schemas.messages import JsonRow, RowProblem

MATCH_ID = "id"  # every entity can be matched by its own id (never written)
MATCH_EXTERNAL_ID = "external_id"  # ... and by the caller's id for it
#: Columns a failed-rows download adds; ignored when the fixed file comes back.
DOWNLOAD_COLUMNS = frozenset({"row_no", "error"})


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid row, ready to stage: how it is matched and what it writes."""

    key: str  # normalised match value: equal keys are the same entity
    display_key: str  # the match value as given
    match_id: int | None  # the entity id, when matching on id
    values: tuple[Any, ...]  # one per Entity.fields, None where absent
    mask: int  # bit i set: fields[i] is written (possibly with None, to clear it)


class Entity(Protocol):
    name: str
    identifier: str  # the natural key, and the default match_on
    match_fields: tuple[str, ...]
    fields: tuple[str, ...]  # written fields, in staging order
    apply_query: str  # sql/queries/<name>.sql; parameters as in stream_agents.batch

    def prepare(self, row: JsonRow, options: ActionOptions, action: str) -> Prepared | RowProblem:
        """Validate one row; never raises for bad input."""
        ...

    def display_key(self, row: JsonRow, options: ActionOptions) -> str:
        """The row's match value as given, for logs, even when the row is invalid."""
        ...


class ModelEntity:
    """An entity whose rows are validated by a pydantic model with an ``id`` field."""

    def __init__(
        self, name: str, model: type[BaseModel], identifier: str, apply_query: str
    ) -> None:
        self.name = name
        self.model = model
        self.identifier = identifier
        self.apply_query = apply_query
        self.match_fields: tuple[str, ...] = (identifier, MATCH_EXTERNAL_ID, MATCH_ID)
        self.fields: tuple[str, ...] = tuple(f for f in model.model_fields if f != MATCH_ID)
        self._known = frozenset(model.model_fields)

    def match_on(self, options: ActionOptions) -> str:
        return options.match_on or self.identifier

    def _fields_of(self, row: JsonRow, options: ActionOptions) -> dict[str, Any]:
        """Apply the mapping, empty-value rules and custom-field routing."""
        fields: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        mapping = options.normalised_mapping()
        for column, value in row.items():
            source = column.strip().lower()
            if source in DOWNLOAD_COLUMNS:
                continue
            name = mapping.get(source, source)
            if isinstance(value, str):
                if value == "" and options.ignore_empty:
                    continue
                if options.clear_token is not None and value == options.clear_token:
                    value = None
            if name in self._known:
                fields[name] = value
            elif options.unmapped == "custom_fields":
                custom[column.strip()] = value
        if custom:
            fields["custom_fields"] = {**(fields.get("custom_fields") or {}), **custom}
        return fields

    def display_key(self, row: JsonRow, options: ActionOptions) -> str:
        value = self._fields_of(row, options).get(self.match_on(options))
        return value.strip() if isinstance(value, str) else "" if value is None else str(value)

    def prepare(self, row: JsonRow, options: ActionOptions, action: str) -> Prepared | RowProblem:
        match_on = self.match_on(options)
        fields = self._fields_of(row, options)
        if action == "delete":  # only the match value matters
            fields = {k: v for k, v in fields.items() if k == match_on}
        try:
            model = self.model.model_validate(fields)
        except ValidationError as exc:
            return _problem(exc)
        given = model.model_fields_set
        if self.identifier in given and getattr(model, self.identifier) is None:
            return RowProblem(f"invalid_{self.identifier}", f"{self.identifier}: cannot be cleared")
        value = getattr(model, match_on)
        if value is None:
            return RowProblem(
                f"missing_{match_on}", f"{match_on}: required to match the {self.name}"
            )
        values = tuple(getattr(model, f) for f in self.fields)
        mask = sum(1 << i for i, f in enumerate(self.fields) if f in given)
        key = str(value).lower() if match_on == self.identifier else str(value)
        display = str(fields.get(match_on, value)).strip()
        match_id = value if match_on == MATCH_ID else None
        return Prepared(key, display, match_id, values, mask)


def _problem(exc: ValidationError) -> RowProblem:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "row"
    reason = f"invalid_{field}"
    if first["type"] == "extra_forbidden":
        reason = "invalid_row"
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
        for e in errors
    )
    return RowProblem(reason, message)


CONTACT = ModelEntity("contact", ContactRow, identifier="email", apply_query="contacts_apply")
COMPANY = ModelEntity("company", CompanyRow, identifier="domain", apply_query="companies_apply")

ENTITIES: dict[str, Entity] = {e.name: e for e in (CONTACT, COMPANY)}
