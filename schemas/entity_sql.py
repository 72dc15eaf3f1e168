"""The one template an entity's statements are rendered from.

Each entity's ``sql/queries/<table>_apply.sql`` and ``<table>_insert.sql``
are rendered here from its row model (its fields, in order, and their types),
its table, identifier and references, and committed: each stays a plain
statement to read, grep and EXPLAIN. ``bulkflow sql-render`` writes them (and
the actions' statements, :mod:`schemas.action`); a test renders every one and
compares it byte for byte with the committed file.

A staged row is a JSON array: a fixed head (:data:`APPLY_HEAD` or
:data:`INSERT_HEAD`), then one element per written field in the model's field
order (``id`` aside: it only matches). :func:`columns` derives each field's
offset, mask bit and cast from the model, so the statements and
:class:`schemas.entity.ModelRowReader` cannot disagree on the order.
"""

from __future__ import annotations

import textwrap
import types
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel

from schemas.entity import MATCH_EXTERNAL_ID, MATCH_ID, Entity, ModelEntity, Reference

#: What precedes the fields in a row staged for an apply statement.
APPLY_HEAD = ("seq", "account_id", "action_id", "row_no", "op", "match_id", "mask")
#: ... and in a row staged for an insert statement (the fast path).
INSERT_HEAD = ("account_id", "action_id", "row_no")

_CASTS: dict[type, str] = {int: "int", Decimal: "numeric", date: "date", bool: "boolean"}
_WIDTH = 92  # generated lines wrap before this column


class Column(NamedTuple):
    """One written field of a model, as the statements stage, compare and store it."""

    field: str  # the model's field: its name in the staged rows
    position: int  # among the written fields: mask bit 1 << position
    kind: str  # "value", "custom_fields" (jsonb, merged), "text_array", "reference"
    cast: str  # the SQL type a value is cast to; "" for text
    column: str  # where the table keeps it (a reference: the id it resolves to)
    reference: Reference | None

    @property
    def bit(self) -> int:
        return 1 << self.position

    def offset(self, head: tuple[str, ...]) -> int:
        return len(head) + self.position


def columns(model: type[BaseModel], references: dict[str, Reference] | None = None) -> list[Column]:
    """The model's written fields in staging order, with how each is cast."""
    references = references or {}
    found = []
    for index, (name, info) in enumerate(
        (n, i) for n, i in model.model_fields.items() if n != MATCH_ID
    ):
        base = _base(info.annotation)
        if name in references:
            ref = references[name]
            found.append(Column(name, index, "reference", "", ref.column, ref))
        elif base is dict:
            found.append(Column(name, index, "custom_fields", "", name, None))
        elif base is list:
            found.append(Column(name, index, "text_array", "", name, None))
        elif base is str:
            found.append(Column(name, index, "value", "", name, None))
        elif base in _CASTS:
            found.append(Column(name, index, "value", _CASTS[base], name, None))
        else:
            raise TypeError(f"{model.__name__}.{name}: no SQL type for {info.annotation!r}")
    return found


def _base(annotation: Any) -> Any:
    """``Annotated[int, ...] | None`` -> ``int``; a Literal of strings -> ``str``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _base(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        [inner] = [a for a in get_args(annotation) if a is not type(None)]
        return _base(inner)
    if origin is Literal:
        return type(get_args(annotation)[0])
    return origin or annotation


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def probe(entity: ModelEntity, alias: str, value: str) -> str:
    """The condition that finds ``value`` by the entity's identifier (on its unique index)."""
    if entity.case_insensitive:
        return f"lower({alias}.{entity.identifier}) = lower({value})"
    return f"{alias}.{entity.identifier} = {value}"


def _unique(entity: ModelEntity) -> list[str]:
    """The fields a unique index keeps one of per account: identifier, external id."""
    return list(dict.fromkeys((entity.identifier, MATCH_EXTERNAL_ID)))


def _same(entity: ModelEntity, field: str, left: str, right: str) -> str:
    if field == entity.identifier:
        return probe(entity, left, f"{right}.{field}")
    return f"{left}.{field} = {right}.{field}"


def comment(*paragraphs: str) -> str:
    """``--`` lines, each paragraph wrapped, an empty comment line between them."""
    blocks = [
        textwrap.fill(p, 79, initial_indent="-- ", subsequent_indent="-- ") for p in paragraphs
    ]
    return "\n--\n".join(blocks) + "\n"


def wrap(items: list[str], first: str, indent: str) -> str:
    """``items`` joined with ", ", the first line after ``first``, wrapped at :data:`_WIDTH`."""
    lines, line = [], first
    for n, item in enumerate(items):
        piece = item + ("," if n < len(items) - 1 else "")
        if line not in (first, indent) and len(line) + 1 + len(piece) > _WIDTH:
            lines.append(line)
            line = indent
        line += piece if line in (first, indent) else " " + piece
    lines.append(line)
    return "\n".join(lines)


def generated_by(model: type[BaseModel], source: str = "schemas/entity_sql.py") -> str:
    return comment(
        f"Generated by {source} from {model.__module__}.{model.__name__}: do not"
        " edit; change the model or the template and run `bulkflow sql-render`"
        " (tests/schemas/test_entity_sql.py compares this file with the rendering)."
    )


def staged(cols: list[Column]) -> str:
    """The ``staged`` CTE: $1's rows as typed columns, references resolved."""
    select = [
        "(r->>0)::int AS seq, r->>1 AS account_id, (r->>2)::uuid AS action_id,",
        "(r->>3)::int AS row_no, r->>4 AS op, (r->>5)::bigint AS match_id,",
        "(r->>6)::int AS mask,",
    ]
    items = []
    for col in cols:
        r = col.offset(APPLY_HEAD)
        items.append(_stage(col, f"r->>{r}", f"r->{r}") + f" AS {col.field}")
        if col.reference:
            ref = col.reference
            target = ref.entity
            items.append(
                f"(SELECT o.id FROM {target.table} o\n"
                f"            WHERE o.account_id = r->>1 AND {probe(target, 'o', f'r->>{r}')})"
                f" AS {ref.column}"
            )
    select += [item + ("," if n < len(items) - 1 else "") for n, item in enumerate(items)]
    body = "\n           ".join(select)
    return (
        "WITH staged AS MATERIALIZED (\n"
        f"    SELECT {body}\n"
        "    FROM jsonb_array_elements($1) AS r\n"
        ")"
    )


def _stage(col: Column, text: str, json: str) -> str:
    if col.kind == "custom_fields":
        return f"nullif({json}, 'null')"
    if col.kind == "text_array":
        return f"ARRAY(SELECT jsonb_array_elements_text(nullif({json}, 'null')))"
    return f"({text})::{col.cast}" if col.cast else text


def match(entity: ModelEntity) -> str:
    """The LEFT JOIN LATERAL that finds each staged row's entity, by $2."""
    table = entity.table
    branches = [
        f"SELECT c.* FROM {table} c\n"
        f"        WHERE $2 = '{field}' AND c.account_id = s.account_id"
        f" AND {_same(entity, field, 'c', 's')}"
        for field in _unique(entity)
    ]
    branches.append(
        f"SELECT c.* FROM {table} c\n"
        f"        WHERE $2 = '{MATCH_ID}' AND c.account_id = s.account_id AND c.id = s.match_id"
    )
    return (
        "    -- One index probe per staged row, whatever the table size: a UNION ALL\n"
        "    -- branch per match field, each on its own index; the branches whose\n"
        "    -- $2 test is false are skipped as one-time filters. (An OR of the\n"
        "    -- tests makes generic plans scan the whole table.)\n"
        "    LEFT JOIN LATERAL (\n        "
        + "\n        UNION ALL\n        ".join(branches)
        + "\n    ) c ON true"
    )


def apply_sql(entity: ModelEntity) -> str:
    """``<table>_apply.sql``: one round of staged rows, every action, one statement."""
    cols = columns(entity.model, entity.references)
    name, table, ident = entity.name, entity.table, entity.identifier
    found = f"{name}_id"
    model = f"{entity.model.__module__}.{entity.model.__name__}"
    unique = _unique(entity)
    header = (
        generated_by(entity.model)
        + "--\n"
        + comment(
            f"Applies one round of staged {name} rows in one statement and returns, per"
            " staged row, an outcome code (see schemas.messages.CODES), a reason and a"
            f" related row_no. A round holds at most one row per matched {name}: rows"
            " that repeat a key go to a later round, in order.",
            "$1: the staged rows, a JSON array of arrays (one jsonb parameter: 0.6 us"
            " per row to encode, against 11 us for one array parameter per column):"
            " [seq, account_id, action_id, row_no, op (create, update, upsert, delete),"
            f" match_id, mask, then the written fields in the order of {model} (mask bit"
            f" 0 = {cols[0].field} ...): {', '.join(c.field for c in cols)}]. $2: match_on"
            f" ({', '.join(repr(f) for f in entity.match_fields)}: one value for the round).",
            "Code 'r' means another write got in between our read and our write (a"
            " staged row of this statement, or a concurrent commit): the caller applies"
            " the row again in a new statement, which sees it.",
        )
    )

    changes = []
    for col in cols:
        test = f"s.mask & {col.bit} <> 0"
        if col.kind == "custom_fields":
            changes.append(
                f"({test}\n                   AND coalesce(c.{col.column} || s.{col.field}, '{{}}')"
                f" IS DISTINCT FROM c.{col.column})"
            )
        elif col.field == ident:
            changes.append(f"({test} AND $2 <> '{ident}' AND s.{ident} IS DISTINCT FROM c.{ident})")
        else:
            changes.append(f"({test} AND s.{col.column} IS DISTINCT FROM c.{col.column})")
    bits = {c.field: c.bit for c in cols}
    conflicts = [
        f"WHEN $2 <> '{field}' AND s.{field} IS NOT NULL\n"
        f"                    AND (c.id IS NULL OR s.mask & {bits[field]} <> 0)\n"
        f"                    AND EXISTS (SELECT 1 FROM {table} o\n"
        f"                                WHERE o.account_id = s.account_id\n"
        f"                                  AND {_same(entity, field, 'o', 's')}\n"
        f"                                  AND o.id IS DISTINCT FROM c.id)\n"
        f"                   THEN '{field}_taken'"
        for field in unique
    ]
    for col in cols:
        if col.reference:
            conflicts.append(
                f"WHEN s.mask & {col.bit} <> 0 AND s.{col.field} IS NOT NULL"
                f" AND s.{col.column} IS NULL\n"
                f"                   THEN '{col.reference.entity.name}_not_found'"
            )
    matched = (
        "matched AS MATERIALIZED (\n"
        "    SELECT s.*,\n"
        f"           c.id AS {found},\n"
        "           coalesce(c.last_action_id = s.action_id AND c.last_row_no < s.row_no, false)"
        " AS duplicate,\n"
        "           c.last_row_no AS first_row_no,\n"
        "           c.id IS NOT NULL AND (\n"
        "                  " + "\n               OR ".join(changes) + "\n"
        "           ) AS changes,\n"
        f"           -- Another {name} already holds a unique value this row would write"
        + (",\n           -- or the row names what does not exist." if entity.references else ".")
        + "\n           CASE\n"
        "               " + "\n               ".join(conflicts) + "\n"
        "           END AS conflict\n"
        "    FROM staged s\n" + match(entity) + "\n)"
    )

    width = max([len(c.column) for c in cols] + [len("last_action_id")])
    sets = []
    for col in cols:
        target = col.column.ljust(width)
        test = f"m.mask & {col.bit} <> 0"
        if col.kind == "custom_fields":
            pad = " " * (8 + width + len(" = CASE "))  # under WHEN
            sets.append(
                f"{target} = CASE WHEN {test}\n"
                f"{pad}THEN coalesce(c.{col.column} || m.{col.field}, '{{}}')\n"
                f"{pad}ELSE c.{col.column} END"
            )
        elif col.field == ident:
            sets.append(
                f"{target} = CASE WHEN {test} AND $2 <> '{ident}' THEN m.{ident} ELSE c.{ident} END"
            )
        else:
            sets.append(f"{target} = CASE WHEN {test} THEN m.{col.column} ELSE c.{col.column} END")
    sets += [
        f"{'updated_at'.ljust(width)} = CASE WHEN m.changes THEN now() ELSE c.updated_at END",
        f"{'last_action_id'.ljust(width)} = m.action_id",
        f"{'last_row_no'.ljust(width)} = m.row_no",
    ]
    updated = (
        "updated AS (\n"
        f"    UPDATE {table} c\n"
        "    SET " + ",\n        ".join(sets) + "\n"
        "    FROM matched m\n"
        f"    WHERE c.id = m.{found}\n"
        "      AND m.op IN ('update', 'upsert')\n"
        "      AND NOT m.duplicate\n"
        "      AND m.conflict IS NULL\n"
        "    RETURNING m.seq\n"
        ")"
    )
    deleted = (
        "deleted AS (\n"
        f"    DELETE FROM {table} c\n"
        "    USING matched m\n"
        f"    WHERE c.id = m.{found} AND m.op = 'delete' AND NOT m.duplicate\n"
        "    RETURNING m.seq\n"
        ")"
    )
    targets = ["account_id", *(c.column for c in cols), "last_action_id", "last_row_no"]
    values = ["m.account_id"]
    for col in cols:
        if col.kind in ("custom_fields", "text_array"):
            values.append(f"coalesce(m.{col.field}, '{{}}')")
        else:
            values.append(f"m.{col.column}")
    values += ["m.action_id", "m.row_no"]
    inserted = (
        "inserted AS (\n"
        f"    INSERT INTO {table} AS c (\n"
        + wrap(targets, "        ", "        ")
        + "\n    )\n"
        + wrap(values, "    SELECT ", "           ")
        + "\n    FROM matched m\n"
        f"    WHERE m.{found} IS NULL\n"
        "      AND m.op IN ('create', 'upsert')\n"
        f"      AND $2 <> '{MATCH_ID}'\n"
        f"      AND m.{ident} IS NOT NULL\n"
        "      AND m.conflict IS NULL\n"
        "    ORDER BY m.seq\n"
        "    ON CONFLICT DO NOTHING\n"
        "    -- (action_id, row_no) names the staged row: it joins back without a\n"
        "    -- condition on $2, which generic plans could only evaluate row by row.\n"
        "    RETURNING c.last_action_id AS action_id, c.last_row_no AS row_no\n"
        ")"
    )
    outcome = (
        "SELECT m.seq,\n"
        "       CASE\n"
        "           WHEN m.duplicate THEN 's'\n"
        "           WHEN m.op = 'delete' THEN CASE WHEN d.seq IS NULL THEN 's' ELSE 'd' END\n"
        f"           WHEN m.{found} IS NULL AND (m.op = 'update' OR $2 = '{MATCH_ID}') THEN 'f'\n"
        f"           WHEN m.{found} IS NOT NULL AND m.op = 'create' THEN 's'\n"
        "           WHEN m.conflict IS NOT NULL THEN 'f'\n"
        f"           WHEN m.{found} IS NULL AND m.{ident} IS NULL THEN 'f'\n"
        f"           WHEN m.{found} IS NULL THEN CASE WHEN i.row_no IS NULL THEN 'r' ELSE 'c' END\n"
        "           WHEN u.seq IS NULL THEN 'r'\n"
        "           WHEN m.changes THEN 'u'\n"
        "           ELSE 'n'\n"
        "       END AS code,\n"
        "       CASE\n"
        "           WHEN m.duplicate THEN 'duplicate'\n"
        "           WHEN m.op = 'delete'"
        " THEN CASE WHEN d.seq IS NULL THEN 'not_found' ELSE '' END\n"
        f"           WHEN m.{found} IS NULL AND (m.op = 'update' OR $2 = '{MATCH_ID}')"
        " THEN 'not_found'\n"
        f"           WHEN m.{found} IS NOT NULL AND m.op = 'create' THEN 'already_exists'\n"
        "           WHEN m.conflict IS NOT NULL THEN m.conflict\n"
        f"           WHEN m.{found} IS NULL AND m.{ident} IS NULL THEN 'missing_{ident}'\n"
        "           ELSE ''\n"
        "       END AS reason,\n"
        "       CASE WHEN m.duplicate THEN m.first_row_no ELSE 0 END AS related_row\n"
        "FROM matched m\n"
        "LEFT JOIN updated u ON u.seq = m.seq\n"
        "LEFT JOIN deleted d ON d.seq = m.seq\n"
        "LEFT JOIN inserted i ON i.action_id = m.action_id AND i.row_no = m.row_no\n"
        "ORDER BY m.seq\n"
    )
    return header + ",\n".join([staged(cols), matched, updated, deleted, inserted]) + "\n" + outcome


#: The Postgres type each cast of a plain value is stored as (text: no cast).
_COPY_TYPES = {"": "text", "int": "integer"}


#: Where the table keeps :data:`INSERT_HEAD`, and its Postgres types.
_COPY_HEAD = [("account_id", "text"), ("last_action_id", "uuid"), ("last_row_no", "integer")]


def copy_columns(entity: Entity) -> list[tuple[str, str]] | None:
    """``<table>_insert_plain.sql`` as binary COPY would write it: the table's
    columns, each with its Postgres type, for :data:`INSERT_HEAD` then the
    written fields in staging order. None if a field is not a value COPY can
    store as the statement does: a reference (resolved by a subquery), a text
    array, or a cast without a type here (``tests/stream_agents/test_plain_insert.py``
    checks these types against the migrated tables).
    """
    written = []
    for col in columns(entity.model, entity.references):
        if col.kind == "custom_fields":
            written.append((col.column, "jsonb"))
        elif col.kind == "value" and col.cast in _COPY_TYPES:
            written.append((col.column, _COPY_TYPES[col.cast]))
        else:
            return None
    return _COPY_HEAD + written


def insert_sql(entity: ModelEntity, *, plain: bool = False) -> str:
    """``<table>_insert.sql``: the fast path for rows that create; ``plain``:
    ``<table>_insert_plain.sql``, the same without ``ON CONFLICT``."""
    cols = columns(entity.model, entity.references)
    name, table = entity.name, entity.table
    model = f"{entity.model.__module__}.{entity.model.__name__}"
    what = (
        f"{table}_insert.sql for rows the agent knows to be new (stream_agents/"
        "fresh_keys.py): a plain INSERT, so Postgres does not probe each unique index"
        " before each row as ON CONFLICT does. A row whose"
        f" {' or '.join(_unique(entity))} is taken aborts the statement (unique_violation):"
        f" the caller rolls back its savepoint and inserts the rows with {table}_insert.sql."
        " It returns nothing: when the command tag counts fewer rows than were sent, the"
        " caller does the same."
        if plain
        else f"The fast path of {table}_apply.sql for rows that may create {_a(name)}:"
        " insert every row no unique index refuses, and return which ones went in."
        f" A refused row (its {' or '.join(_unique(entity))} is taken: an update, an"
        f" in-file duplicate, a conflict) inserts nothing and goes through"
        f" {table}_apply.sql, which decides its outcome; an inserted row is exactly"
        " what that statement would have inserted, at a fraction of the cost (no"
        " probe before the write)."
    )
    header = (
        generated_by(entity.model)
        + "--\n"
        + comment(
            ("The same as " if plain else "")
            + what
            + (
                " A row naming what does not exist is not inserted either: the apply"
                " statement fails it."
                if entity.references
                else ""
            ),
            "$1: the rows, a JSON array of arrays [account_id, action_id, row_no, then"
            f" the written fields in the order of {model}: {', '.join(c.field for c in cols)}]."
            + (
                ""
                if plain
                else " Returns the inserted rows' action ids and row numbers as two arrays"
                " (one result row instead of one per inserted row)."
            ),
        )
    )
    targets = ["account_id", *(c.column for c in cols), "last_action_id", "last_row_no"]
    values, resolved, wheres = ["r->>0"], [], []
    for col in cols:
        r = col.offset(INSERT_HEAD)
        if col.reference:
            target = col.reference.entity
            values.append(col.column)
            # A scalar subquery in a materialized CTE: one index probe per row,
            # evaluated once (a lateral join may become a hash join on a scan).
            resolved.append(
                f",\n           (SELECT o.id FROM {target.table} o\n"
                f"            WHERE o.account_id = r->>0"
                f" AND {probe(target, 'o', f'r->>{r}')}) AS {col.column}"
            )
            wheres.append(f"      AND (r->>{r} IS NULL OR {col.column} IS NOT NULL)\n")
        elif col.kind in ("custom_fields", "text_array"):
            values.append(f"coalesce({_stage(col, f'r->>{r}', f'r->{r}')}, '{{}}')")
        else:
            values.append(_stage(col, f"r->>{r}", f"r->{r}"))
    values += ["(r->>1)::uuid", "(r->>2)::int"]
    ident = next(c for c in cols if c.field == entity.identifier)
    rows = "jsonb_array_elements($1) WITH ORDINALITY AS s (r, seq)"
    # The plain statement returns nothing (the caller reads its command tag);
    # the refusable one returns what went in, through the CTE "inserted".
    head = "" if plain else "WITH inserted AS (\n"
    if resolved:
        head = (
            "WITH staged AS MATERIALIZED (\n"
            f"    SELECT s.r, s.seq{''.join(resolved)}\n"
            f"    FROM {rows}\n" + (")\n" if plain else "),\ninserted AS (\n")
        )
        rows = "staged AS s"
    pad = "" if plain else "    "  # the refusable INSERT is inside the CTE
    insert = (
        f"{pad}INSERT INTO {table} AS c (\n"
        + wrap(targets, f"{pad}    ", f"{pad}    ")
        + f"\n{pad})\n"
        + wrap(values, f"{pad}SELECT ", f"{pad}       ")
        + f"\n{pad}FROM {rows}\n"
        + f"{pad}WHERE r->>{ident.offset(INSERT_HEAD)} IS NOT NULL\n"
        + "".join(pad + w.removeprefix("    ") for w in wheres)
        + f"{pad}ORDER BY s.seq\n"
    )
    if plain:
        return header + head + insert
    return (
        header
        + head
        + insert
        + "    ON CONFLICT DO NOTHING\n"
        + "    RETURNING c.last_action_id, c.last_row_no\n"
        ")\n"
        "SELECT coalesce(array_agg(last_action_id::text), '{}') AS action_ids,\n"
        "       coalesce(array_agg(last_row_no), '{}') AS row_nos\n"
        "FROM inserted\n"
    )
