"""How an entity plugs in: validation, identifier, and the SQL that applies it.

An :class:`Entity` turns one input row into a :class:`Prepared` row (or a
:class:`RowProblem`) and names the SQL file that applies a set of prepared rows
in one statement. :class:`ModelEntity` implements it for any pydantic row model;
its statements (``sql/queries/<table>_apply.sql``, ``<table>_insert.sql``) are
rendered from the model by :mod:`schemas.entity_sql` and committed. Adding an
entity is a model, a table migration, one line in :data:`ENTITIES` and
``bulkflow sql-render`` (see "Adding an entity" in the README).
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ValidationError

from schemas.cells import JsonRow
from schemas.company import CompanyRow
from schemas.contact import ContactRow
from schemas.messages import RowProblem
from schemas.opportunity import OpportunityRow
from schemas.options import ActionOptions, column_key

MATCH_ID = "id"  # every entity can be matched by its own id (never written)
MATCH_EXTERNAL_ID = "external_id"  # ... and by the caller's id for it
#: Columns a failed-rows download adds; ignored when the fixed file comes back.
DOWNLOAD_COLUMNS = frozenset({"row_no", "error"})


class Prepared(NamedTuple):
    """A valid row, ready to stage: how it is matched and what it writes.

    A named tuple: made once per row, immutable, and made in half the time
    of a frozen dataclass (0.7 against 1.4 us with keywords).
    """

    key: str  # normalised match value: equal keys are the same entity
    display_key: str  # the match value as given
    match_id: int | None  # the entity id, when matching on id
    values: tuple[Any, ...]  # one per Entity.fields, None where absent
    mask: int  # bit i set: fields[i] is written (possibly with None, to clear it)


class RowReader(Protocol):
    """Reads the rows of one chunk: the options and action are fixed for all of them."""

    def prepare(self, row: JsonRow) -> Prepared | RowProblem:
        """Validate one row; never raises for bad input."""
        ...

    def display_key(self, row: JsonRow) -> str:
        """The row's match value as given, for logs, even when the row is invalid."""
        ...


class Entity(Protocol):
    name: str
    plural: str  # the URL segment of its entity API: /v1/<plural>
    table: str  # its Postgres table (account_id, id, the fields, created_at, updated_at)
    model: type[BaseModel]  # the row model: the fields' types
    identifier: str  # the natural key, and the default match_on
    match_fields: tuple[str, ...]
    fields: tuple[str, ...]  # written fields, in staging order
    #: Fields naming another entity; the table keeps that entity's id instead.
    references: dict[str, Reference]
    apply_query: str  # sql/queries/<name>.sql; its header names the parameters
    insert_query: str  # its fast path for rows that create: inserts what no index refuses
    plain_insert_query: str  # ... for rows known to be new: no ON CONFLICT, one taken key aborts it

    def reader(self, options: ActionOptions, action: str) -> RowReader:
        """A reader for the rows of a chunk with these options and this action."""
        ...


class Reference(NamedTuple):
    """A field that names another entity by its identifier; the table keeps its id.

    A row naming one that does not exist in the account fails with
    ``<entity>_not_found``.
    """

    column: str  # the column that holds the referenced entity's id
    entity: ModelEntity


class ModelEntity:
    """An entity whose rows are validated by a pydantic model with an ``id`` field.

    The model's field order is the staging order: :mod:`schemas.entity_sql`
    renders the entity's statements from it, with a column of ``table`` per
    field (a :class:`Reference` field's column holds the id it resolves to).
    """

    def __init__(
        self,
        name: str,
        model: type[BaseModel],
        *,
        table: str,
        identifier: str,
        plural: str,
        case_insensitive: bool = False,
        references: dict[str, Reference] | None = None,
    ) -> None:
        self.name = name
        self.plural = plural
        self.model = model
        self.table = table
        self.identifier = identifier
        #: The identifier is compared by lower(): its unique index is on lower(identifier).
        self.case_insensitive = case_insensitive
        self.references: dict[str, Reference] = references or {}
        self.apply_query = f"{table}_apply"
        self.insert_query = f"{table}_insert"
        self.plain_insert_query = f"{table}_insert_plain"
        self.match_fields: tuple[str, ...] = tuple(
            dict.fromkeys((identifier, MATCH_EXTERNAL_ID, MATCH_ID))
        )
        self.fields: tuple[str, ...] = tuple(f for f in model.model_fields if f != MATCH_ID)
        self.known = frozenset(model.model_fields)

    def reader(self, options: ActionOptions, action: str) -> ModelRowReader:
        return ModelRowReader(self, options, action)


#: Where an input column goes: (field name, is a custom field), or None: dropped.
_Route = tuple[str, bool] | None


class ModelRowReader:
    """Per-row work for one chunk, with everything per-chunk worked out once.

    The rows of a chunk share their options and (for CSV) their columns, so
    where each column goes is decided once per column name, not once per cell.
    """

    def __init__(self, entity: ModelEntity, options: ActionOptions, action: str) -> None:
        self._entity = entity
        self._action = action
        self._match_on = options.match_on or entity.identifier
        self._mapping = options.normalised_mapping()
        self._ignore_empty = options.ignore_empty
        self._clear_token = options.clear_token
        self._keep_unmapped = options.unmapped == "custom_fields"
        self._routes: dict[str, _Route] = {}
        # The model's core validator itself: model_validate adds a Python layer
        # that cost as much as the validation (5.8 us -> 3.1 us per row).
        self._validate = entity.model.__pydantic_validator__.validate_python
        self._bits = {f: 1 << i for i, f in enumerate(entity.fields)}
        self._masks: dict[tuple[str, ...], int] = {}
        self._values = operator.itemgetter(*entity.fields)

    def _route(self, column: str) -> _Route:
        source = column_key(column)
        if source in DOWNLOAD_COLUMNS:
            return None
        name = self._mapping.get(source, source)
        if name in self._entity.known:
            return (name, False)
        return (column.strip(), True) if self._keep_unmapped else None

    def route(self, column: str) -> _Route:
        """Where the column goes: (field, is a custom field), or None: dropped."""
        routes = self._routes
        return (
            routes[column] if column in routes else routes.setdefault(column, self._route(column))
        )

    def fields(self, row: JsonRow) -> dict[str, Any]:
        """Apply the mapping, empty-value rules and custom-field routing."""
        fields: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        ignore_empty, clear_token = self._ignore_empty, self._clear_token
        for column, value in row.items():
            route = self.route(column)
            if route is None:
                continue
            if type(value) is str:
                if value == "" and ignore_empty:
                    continue
                if value == clear_token:
                    value = None
            name, is_custom = route
            if is_custom:
                custom[name] = value
            else:
                fields[name] = value
        given = fields.get("custom_fields")
        # A given custom_fields that is not an object stays as it is: it fails validation.
        if custom and (given is None or isinstance(given, dict)):
            fields["custom_fields"] = {**(given or {}), **custom}
        return fields

    def display_key(self, row: JsonRow) -> str:
        return _display(self.fields(row).get(self._match_on))

    def prepare(self, row: JsonRow) -> Prepared | RowProblem:
        entity, match_on = self._entity, self._match_on
        fields = self.fields(row)
        if self._action == "delete":  # only the match value matters
            fields = {k: v for k, v in fields.items() if k == match_on}
        try:
            model = self._validate(fields)
        except ValidationError as exc:
            return _problem(exc)
        values = model.__dict__
        if entity.identifier in fields and values[entity.identifier] is None:
            return RowProblem(
                f"invalid_{entity.identifier}", f"{entity.identifier}: cannot be cleared"
            )
        value = values[match_on]
        if value is None:
            return RowProblem(
                f"missing_{match_on}", f"{match_on}: required to match the {entity.name}"
            )
        if match_on == entity.identifier and entity.case_insensitive:
            key = str(value).lower()
        else:
            key = str(value)
        display_key = _display(fields.get(match_on, value))
        match_id = value if match_on == MATCH_ID else None
        # Positional: keywords cost a named tuple as much again, once per row.
        return Prepared(key, display_key, match_id, self._values(values), self._mask(fields))

    def _mask(self, fields: dict[str, Any]) -> int:
        """The written fields' bits; rows of a chunk mostly give the same fields."""
        names = tuple(fields)
        mask = self._masks.get(names)
        if mask is None:
            mask = self._masks[names] = sum(self._bits.get(name, 0) for name in set(names))
        return mask


def _display(value: Any) -> str:
    return value.strip() if isinstance(value, str) else "" if value is None else str(value)


def _problem(exc: ValidationError) -> RowProblem:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    # The field, not the item in it: a bad tag is invalid_tags, the message says which.
    reason = f"invalid_{first['loc'][0]}" if first["loc"] else "invalid_row"
    if first["type"] == "extra_forbidden":
        reason = "invalid_row"
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
        for e in errors
    )
    return RowProblem(reason, message)


CONTACT = ModelEntity(
    "contact",
    ContactRow,
    table="contacts",
    plural="contacts",
    identifier="email",
    case_insensitive=True,
)
COMPANY = ModelEntity(
    "company", CompanyRow, table="companies", plural="companies", identifier="domain"
)
OPPORTUNITY = ModelEntity(
    "opportunity",
    OpportunityRow,
    table="opportunities",
    plural="opportunities",
    identifier="external_id",
    references={"contact_email": Reference("contact_id", CONTACT)},
)

#: The one registry of entities: request models take their names from it.
ENTITIES: dict[str, Entity] = {e.name: e for e in (CONTACT, COMPANY, OPPORTUNITY)}
