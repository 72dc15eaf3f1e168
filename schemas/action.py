"""How a bulk action type plugs in: the entities it applies to, its rows, its SQL.

An :class:`ActionType` is registered in :data:`ACTIONS` the way an entity is
in :data:`schemas.entity.ENTITIES`: the request models take their names from
it, the API checks a request's entity and fields against it, and the agents
read each chunk's rows with its reader and apply them with its statement,
through the same pipeline as every other action (rate limits, in-action
de-duplication, outcomes, stats). See "Adding an action" in the README.

The record actions (``create``, ``update``, ``upsert``, ``delete``) apply an
entity's own row model with its ``<table>_apply.sql``. The tag actions
(``add_tags``, ``remove_tags``) have a row model of their own per entity and a
statement rendered here from one template (``<table>_<action>.sql``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from schemas import entity_sql
from schemas.cells import JsonRow
from schemas.column_reader import ChunkReader, ColumnReader, RowByRow
from schemas.contact import TAG_SEPARATOR, ContactTagsRow
from schemas.entity import ENTITIES, Entity, ModelEntity, Prepared, RowReader
from schemas.messages import RowProblem
from schemas.options import ActionOptions


class ActionType(Protocol):
    name: str
    entities: tuple[str, ...]  # the entities it applies to
    #: Its rows may create entities: the insert fast path (``Entity.insert_query``)
    #: is worth trying before the apply statement.
    creates: bool

    def fields(self, entity: Entity) -> tuple[str, ...]:
        """The fields a row of this action may give (the match fields aside)."""
        ...

    def reader(self, entity: Entity, options: ActionOptions) -> RowReader:
        """A reader for the rows of a chunk of this action, one at a time."""
        ...

    def chunk_reader(self, entity: Entity, options: ActionOptions) -> ChunkReader:
        """A reader for all the rows of a chunk of this action at once."""
        ...

    def apply_query(self, entity: Entity) -> str:
        """The sql/queries file that applies a round of staged rows (see entity_sql)."""
        ...

    def queries(self) -> dict[str, str]:
        """The statements this action renders: file name (no .sql) -> text."""
        ...


class RecordAction:
    """Writes an entity's fields: the entity's row model and its apply statement."""

    def __init__(self, name: str, *, creates: bool) -> None:
        self.name = name
        self.creates = creates
        self.entities: tuple[str, ...] = tuple(ENTITIES)

    def fields(self, entity: Entity) -> tuple[str, ...]:
        return entity.fields

    def reader(self, entity: Entity, options: ActionOptions) -> RowReader:
        return entity.reader(options, self.name)

    def chunk_reader(self, entity: Entity, options: ActionOptions) -> ChunkReader:
        if isinstance(entity, ModelEntity):
            return ColumnReader(entity, options, self.name)
        return RowByRow(self.reader(entity, options))

    def apply_query(self, entity: Entity) -> str:
        return entity.apply_query

    def queries(self) -> dict[str, str]:
        return {}  # the entities' own: schemas.entity_sql


#: Given the stored tags and the row's tags (SQL text[] expressions, the stored
#: ones possibly null: no tags) and the indent of continued lines, the new tags.
TagsChange = Callable[[str, str, str], str]


def _added(stored: str, given: str, indent: str) -> str:
    """The stored tags, then the given ones none of them equals without case, in order."""
    return f"\n{indent}".join(
        [
            f"coalesce({stored}, '{{}}')",
            f"|| ARRAY(SELECT t FROM unnest({given}) WITH ORDINALITY AS g (t, i)",
            f"         WHERE lower(t) <> ALL (SELECT lower(x) FROM unnest({stored}) AS x)",
            "         ORDER BY i)",
        ]
    )


def _removed(stored: str, given: str, indent: str) -> str:
    """The stored tags none of the given ones equals without case, in order."""
    return f"\n{indent}".join(
        [
            f"ARRAY(SELECT t FROM unnest({stored}) WITH ORDINALITY AS g (t, i)",
            f"      WHERE lower(t) <> ALL (SELECT lower(x) FROM unnest({given}) AS x)",
            "      ORDER BY i)",
        ]
    )


class TagAction:
    """Adds tags to, or removes them from, an entity's ``tags text[]`` column, as a set.

    Tags compare without case: a tag is stored as it was first given, and one
    differing only in case is the same tag. A row naming a missing entity
    fails ``not_found``; a row that changes nothing is ``unchanged``.
    """

    creates = False

    def __init__(
        self, name: str, change: TagsChange, models: dict[str, type[BaseModel]], summary: str
    ) -> None:
        self.name = name
        self.summary = summary
        self._change = change
        self.entities: tuple[str, ...] = tuple(models)
        self._views: dict[str, ModelEntity] = {}
        for entity_name, model in models.items():
            entity = ENTITIES[entity_name]
            assert isinstance(entity, ModelEntity), entity_name
            # The entity as this action sees it: its identifier, this action's row model.
            self._views[entity_name] = ModelEntity(
                entity.name,
                model,
                table=entity.table,
                plural=entity.plural,
                identifier=entity.identifier,
                case_insensitive=entity.case_insensitive,
            )

    def fields(self, entity: Entity) -> tuple[str, ...]:
        return self._views[entity.name].fields

    def reader(self, entity: Entity, options: ActionOptions) -> RowReader:
        # Columns other than the match fields and tags are not this action's: dropped.
        view = self._views[entity.name]
        return _TagsReader(
            view.reader(options.model_copy(update={"unmapped": "ignore"}), self.name),
            view.fields.index("tags"),
            self.name,
        )

    def chunk_reader(self, entity: Entity, options: ActionOptions) -> ChunkReader:
        return RowByRow(self.reader(entity, options))

    def apply_query(self, entity: Entity) -> str:
        return f"{entity.table}_{self.name}"

    def queries(self) -> dict[str, str]:
        return {self.apply_query(view): self.render(view) for view in self._views.values()}

    def render(self, entity: ModelEntity) -> str:
        cols = entity_sql.columns(entity.model)
        found, table = f"{entity.name}_id", entity.table
        model = f"{entity.model.__module__}.{entity.model.__name__}"
        header = entity_sql.generated_by(entity.model, "schemas/action.py") + "--\n"
        header += entity_sql.comment(
            f"{self.summary} Applies one round of staged {self.name} rows in one"
            " statement and returns, per staged row, an outcome code (see"
            " schemas.messages.CODES), a reason and a related row_no: 'u' when the"
            f" tags changed, 'n' when not, 'f' not_found for a missing {entity.name},"
            " 's' duplicate for a row repeating an earlier one of its action. Tags"
            " compare without case (lower()); a tag is stored as it was first given.",
            f"$1: the staged rows, [seq, account_id, action_id, row_no, op, match_id,"
            f" mask, then in the order of {model}: {', '.join(c.field for c in cols)}];"
            f" $2: match_on ({', '.join(repr(f) for f in entity.match_fields)}).",
            "The tags written are worked out in the UPDATE from the row as it is"
            " then: a concurrent write to the same tags is built on, not lost.",
        )
        matched = (
            "matched AS MATERIALIZED (\n"
            "    SELECT s.*,\n"
            f"           c.id AS {found},\n"
            "           coalesce(c.last_action_id = s.action_id"
            " AND c.last_row_no < s.row_no, false) AS duplicate,\n"
            "           c.last_row_no AS first_row_no,\n"
            "           coalesce(c.tags, '{}') AS stored_tags,\n"
            "           " + self._change("c.tags", "s.tags", " " * 11) + " AS new_tags\n"
            "    FROM staged s\n" + entity_sql.match(entity) + "\n)"
        )
        updated = (
            "updated AS (\n"
            f"    UPDATE {table} c\n"
            "    SET tags           = " + self._change("c.tags", "m.tags", " " * 25) + ",\n"
            "        updated_at     = CASE WHEN m.new_tags IS DISTINCT FROM m.stored_tags\n"
            "                              THEN now() ELSE c.updated_at END,\n"
            "        last_action_id = m.action_id,\n"
            "        last_row_no    = m.row_no\n"
            "    FROM matched m\n"
            f"    WHERE c.id = m.{found} AND m.op = '{self.name}' AND NOT m.duplicate\n"
            "    RETURNING m.seq, c.tags IS DISTINCT FROM m.stored_tags AS changed\n"
            ")"
        )
        outcome = (
            "SELECT m.seq,\n"
            "       CASE\n"
            "           WHEN m.duplicate THEN 's'\n"
            f"           WHEN m.{found} IS NULL THEN 'f'\n"
            "           WHEN u.seq IS NULL THEN 'r'\n"
            "           WHEN u.changed THEN 'u'\n"
            "           ELSE 'n'\n"
            "       END AS code,\n"
            "       CASE\n"
            "           WHEN m.duplicate THEN 'duplicate'\n"
            f"           WHEN m.{found} IS NULL THEN 'not_found'\n"
            "           ELSE ''\n"
            "       END AS reason,\n"
            "       CASE WHEN m.duplicate THEN m.first_row_no ELSE 0 END AS related_row\n"
            "FROM matched m\n"
            "LEFT JOIN updated u ON u.seq = m.seq\n"
            "ORDER BY m.seq\n"
        )
        return header + ",\n".join([entity_sql.staged(cols), matched, updated]) + "\n" + outcome


class _TagsReader:
    """A tag action's rows: the entity's reader for its row model, tags required."""

    def __init__(self, inner: RowReader, tags_at: int, action: str) -> None:
        self._inner = inner
        self._tags_at = tags_at
        self._missing = RowProblem(
            "missing_tags", f"tags: required to {action} (a list, or text with {TAG_SEPARATOR!r})"
        )

    def prepare(self, row: JsonRow) -> Prepared | RowProblem:
        prepared = self._inner.prepare(row)
        if isinstance(prepared, Prepared) and prepared.values[self._tags_at] is None:
            return self._missing
        return prepared

    def display_key(self, row: JsonRow) -> str:
        return self._inner.display_key(row)


_BUILT_IN: list[ActionType] = [
    RecordAction("create", creates=True),
    RecordAction("update", creates=False),
    RecordAction("upsert", creates=True),
    RecordAction("delete", creates=False),
    TagAction(
        "add_tags",
        _added,
        {"contact": ContactTagsRow},
        "Adds the given tags to each row's contact, as a set.",
    ),
    TagAction(
        "remove_tags",
        _removed,
        {"contact": ContactTagsRow},
        "Removes the given tags from each row's contact.",
    ),
]

#: The one registry of action types: request models take their names from it.
ACTIONS: dict[str, ActionType] = {a.name: a for a in _BUILT_IN}
