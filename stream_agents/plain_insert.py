"""The plain INSERT of rows known to be new (``stream_agents/fresh_keys.py``), by COPY.

Rows whose keys their action never had go into the table without ``ON
CONFLICT``; a taken key aborts the whole insert (``unique_violation``) and the
caller inserts them the refusable way. For a table whose columns take every
field as the value itself (text, integers, the custom fields' jsonb: not a
reference to resolve), the rows go by binary COPY instead of
``<table>_insert_plain.sql``: Postgres neither parses a ``jsonb`` array nor
extracts each value from it (on 200,000 contact rows, 6.9-8.0 µs a row of its
CPU against 8.9-10.5). The COPY writes what the statement writes: the same
columns, the custom fields ``{}`` when a row gives none, in file order.

A value the COPY cannot send as the statement's cast would store it (an integer
out of range, a string that is not UTF-8) makes the rows go by the statement;
so does one Postgres refuses in COPY for another reason than a taken key (a NUL
character: the statement then fails for it as it always has, and the batch
finds the row at fault).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import asyncpg
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from bulkflow import sql
from bulkflow.binary_copy import BinaryCopy, CopyColumn, PgType, Repeated, Unencodable
from bulkflow.database import json_fragment, row_count
from schemas import entity_sql
from schemas.entity import Entity
from stream_agents.errors import is_transient

log = logging.getLogger(__name__)


class CopyRefused(Exception):
    """Postgres refused the COPY for another reason than a taken key: send the statement."""


class NewRows(NamedTuple):
    """Rows for the plain INSERT, in file order."""

    accounts: Repeated  # their account ids, as runs
    actions: Repeated  # their action ids, as runs
    row_nos: Sequence[int]
    #: Their written fields as Python values, a column per field (made when asked).
    values: Callable[[], Sequence[Sequence[Any]]]
    #: The same as Arrow arrays (custom_fields as JSON texts), when they were read so.
    arrays: Sequence[pa.Array] | None


class Staged(NamedTuple):
    """Rows staged for the plain INSERT: as COPY data, or as the statement's $1."""

    rows: int
    copy: bytes | None  # None: the statement
    statement: orjson.Fragment | None  # made on the event loop when None
    new: NewRows

    def by_statement(self) -> Staged:
        return self._replace(copy=None)


#: Nothing staged: a round whose rows all go another way.
NOTHING = Staged(0, None, None, NewRows(Repeated([], []), Repeated([], []), [], list, None))


class PlainInsert:
    """An entity's plain INSERT: binary COPY when its table takes the rows that way."""

    def __init__(self, entity: Entity) -> None:
        self._query = entity.plain_insert_query
        layout = entity_sql.copy_columns(entity)
        self._copy = (
            None
            if layout is None
            else BinaryCopy(entity.table, [CopyColumn(n, PgType(t)) for n, t in layout])
        )
        self._identifier = entity.fields.index(entity.identifier)
        fields = (layout or [])[len(entity_sql.INSERT_HEAD) :]
        self._custom_fields = [kind == "jsonb" for _, kind in fields]

    @property
    def by_copy(self) -> bool:
        """Whether the entity's table takes new rows by COPY (else the statement)."""
        return self._copy is not None

    def stage(self, new: NewRows) -> Staged:
        """Stage the rows: as COPY data if the table and every value allow it."""
        staged = Staged(len(new.row_nos), None, None, new)
        data = self._copy_data(new) if self._copy is not None and new.row_nos else None
        if data is not None:
            return staged._replace(copy=data)
        return staged._replace(statement=_statement_rows(new))

    def _copy_data(self, new: NewRows) -> bytes | None:
        """The rows as COPY data; None if a row or a value must go by the statement."""
        assert self._copy is not None
        # A row without its identifier is left out by the statement's WHERE (and
        # the caller, counting fewer rows, inserts them the refusable way).
        columns: list[Sequence[Any] | pa.Array] = []
        if new.arrays is not None:
            if new.arrays[self._identifier].null_count:
                return None
            for array, custom in zip(new.arrays, self._custom_fields, strict=True):
                columns.append(pc.fill_null(array, "{}") if custom else array)
        else:
            values = new.values()
            if None in values[self._identifier]:
                return None
            for column, custom in zip(values, self._custom_fields, strict=True):
                columns.append([{} if v is None else v for v in column] if custom else column)
        try:
            return self._copy.encode([new.accounts, new.actions, new.row_nos, *columns])
        except Unencodable:
            return None

    async def insert(self, conn: asyncpg.Connection, staged: Staged) -> int:
        """Insert the staged rows; how many went in. Raises ``UniqueViolationError``
        when a key is taken, :class:`CopyRefused` when COPY refused a value."""
        if staged.copy is None or self._copy is None:
            rows = staged.statement if staged.statement is not None else _statement_rows(staged.new)
            return row_count(await conn.execute(sql.postgres(self._query), rows))
        try:
            return await self._copy.copy(conn, staged.copy)
        except asyncpg.UniqueViolationError:
            raise
        except asyncpg.PostgresError as exc:
            if is_transient(exc):
                raise
            log.info("COPY into %s refused (%s): the statement instead", self._copy.table, exc)
            raise CopyRefused(str(exc)) from exc


def _statement_rows(new: NewRows) -> orjson.Fragment:
    """The statement's $1: a JSON array of [account_id, action_id, row_no, the fields]."""
    accounts, actions = _expand(new.accounts), _expand(new.actions)
    return json_fragment(list(zip(accounts, actions, new.row_nos, *new.values(), strict=True)))


def _expand(runs: Repeated) -> list[Any]:
    expanded: list[Any] = []
    for value, count in zip(runs.values, runs.counts, strict=True):
        expanded += repeat(value, count)
    return expanded
