"""The committed statements are what the templates render from the registries (pure logic)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from schemas import entity_sql, sql_files
from schemas.action import ACTIONS
from schemas.bulk_action import ActionKind, BulkActionRequest, EntityName
from schemas.entity import ENTITIES, ModelEntity

QUERIES = Path(__file__).resolve().parents[2] / "sql" / "queries"


@pytest.mark.parametrize("name", sorted(sql_files.rendered()))
def test_the_committed_file_is_the_rendering_byte_for_byte(name: str) -> None:
    committed = (QUERIES / f"{name}.sql").read_bytes()
    assert committed == sql_files.rendered()[name].encode(), (
        f"sql/queries/{name}.sql differs from its template: run `bulkflow sql-render`"
    )


def test_every_entity_and_action_statement_is_rendered() -> None:
    expected = set()
    for entity in ENTITIES.values():
        expected |= {entity.apply_query, entity.insert_query, entity.plain_insert_query}
        expected |= {a.apply_query(entity) for a in ACTIONS.values() if entity.name in a.entities}
    assert set(sql_files.rendered()) == expected


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_staging_offsets_follow_the_model_field_order(name: str) -> None:
    """The reader stages Entity.fields in order; each statement reads them at those offsets."""
    entity = ENTITIES[name]
    assert isinstance(entity, ModelEntity)
    cols = entity_sql.columns(entity.model, entity.references)
    assert tuple(c.field for c in cols) == entity.fields
    apply_text = entity_sql.apply_sql(entity)
    insert_text = entity_sql.insert_sql(entity)
    for position, field in enumerate(entity.fields):
        at = len(entity_sql.APPLY_HEAD) + position
        staged = re.search(rf"^ +\S*\br->>?{at}\b.* AS {field},?$", apply_text, re.MULTILINE)
        assert staged, f"{field} is not read from element {at} of a staged row"
        # The insert fast path reads it 4 places earlier (a shorter head).
        assert f"r->>{len(entity_sql.INSERT_HEAD) + position}" in insert_text or (
            f"r->{len(entity_sql.INSERT_HEAD) + position}," in insert_text
        )


def test_a_model_field_without_a_sql_type_is_refused() -> None:
    class Odd(BaseModel):
        id: int | None = None
        when: complex | None = None

    with pytest.raises(TypeError, match=r"Odd\.when"):
        entity_sql.columns(Odd)


def test_request_names_come_from_the_registries() -> None:
    assert get_args(EntityName) == tuple(ENTITIES)
    assert get_args(ActionKind) == tuple(ACTIONS)
    assert {"opportunity"} <= set(ENTITIES)
    assert {"add_tags", "remove_tags"} <= set(ACTIONS)
    request = BulkActionRequest.model_validate(
        {"entity": "opportunity", "action": "add_tags", "rows": [{}]}
    )
    assert (request.entity, request.action) == ("opportunity", "add_tags")
    with pytest.raises(ValueError, match="'contact', 'company' or 'opportunity'"):
        BulkActionRequest.model_validate({"entity": "deal", "action": "upsert", "rows": [{}]})
