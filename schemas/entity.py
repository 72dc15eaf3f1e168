"""How an entity plugs into the agents: validation, identifier, set-based SQL.

An :class:`Entity` turns one input row into a :class:`Prepared` row (or a
:class:`RowProblem`) and names the SQL file that applies a set of prepared rows
in one statement. :class:`ModelEntity` implements it for any pydantic row model,
so adding an entity is a model, a table migration and an ``*_apply.sql`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from schemas.bulk_action import ActionOptions
from schemas.contact import ContactRow
from schemas.messages import JsonRow, RowProblem


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid row, ready to stage: its identifier and its field values."""

    key: str  # normalised identifier: equal keys are the same entity
    display_key: str  # the identifier as given
    values: tuple[Any, ...]  # one per Entity.fields, None where absent
    mask: int  # bit i set: fields[i] is written (possibly with None, to clear it)


class Entity(Protocol):
    name: str
    identifier: str
    fields: tuple[str, ...]  # written fields, in staging order (identifier excluded)
    apply_query: str  # sql/queries/<name>.sql, parameters as in stream_agents.batch

    def prepare(self, row: JsonRow, options: ActionOptions, action: str) -> Prepared | RowProblem:
        """Validate one row; never raises for bad input."""
        ...

    def display_key(self, row: JsonRow, options: ActionOptions) -> str:
        """The row's identifier as given, for logs, even when the row is invalid."""
        ...


class ModelEntity:
    """An entity whose rows are validated by a pydantic model."""

    def __init__(
        self, name: str, model: type[BaseModel], identifier: str, apply_query: str
    ) -> None:
        self.name = name
        self.model = model
        self.identifier = identifier
        self.apply_query = apply_query
        self.fields = tuple(f for f in model.model_fields if f != identifier)
        self._known = frozenset(model.model_fields)

    def _fields_of(self, row: JsonRow, options: ActionOptions) -> dict[str, Any]:
        """Apply the mapping, empty-value rules and custom-field routing."""
        fields: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for column, value in row.items():
            name = options.mapping.get(column, column).strip().lower()
            if isinstance(value, str):
                if value == "" and options.ignore_empty:
                    continue
                if options.clear_token is not None and value == options.clear_token:
                    value = None
            if name in self._known:
                fields[name] = value
            elif options.unmapped == "custom_fields" and not options.mapping.get(column):
                custom[column] = value
        if custom:
            fields["custom_fields"] = {**(fields.get("custom_fields") or {}), **custom}
        return fields

    def display_key(self, row: JsonRow, options: ActionOptions) -> str:
        value = self._fields_of(row, options).get(self.identifier)
        return value.strip() if isinstance(value, str) else ""

    def prepare(self, row: JsonRow, options: ActionOptions, action: str) -> Prepared | RowProblem:
        fields = self._fields_of(row, options)
        if action == "delete":  # only the identifier matters
            fields = {k: v for k, v in fields.items() if k == self.identifier}
        try:
            model = self.model.model_validate(fields)
        except ValidationError as exc:
            return _problem(exc)
        given = model.model_fields_set
        values = tuple(getattr(model, f) for f in self.fields)
        mask = sum(1 << i for i, f in enumerate(self.fields) if f in given)
        identifier = str(getattr(model, self.identifier))
        return Prepared(identifier.lower(), identifier, values, mask)


def _problem(exc: ValidationError) -> RowProblem:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "row"
    reason = f"missing_{field}" if first["type"] == "missing" else f"invalid_{field}"
    if first["type"] == "extra_forbidden":
        reason = "invalid_row"
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
        for e in errors
    )
    return RowProblem(reason, message)


CONTACT = ModelEntity("contact", ContactRow, identifier="email", apply_query="contacts_apply")

ENTITIES: dict[str, Entity] = {e.name: e for e in (CONTACT,)}
