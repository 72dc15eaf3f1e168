"""Every generated statement, by file name, and writing them (``bulkflow sql-render``).

The entities' statements come from :mod:`schemas.entity_sql`, the actions' own
from :mod:`schemas.action`; all are committed under ``sql/queries/``.
"""

from __future__ import annotations

from pathlib import Path

from schemas import entity_sql
from schemas.action import ACTIONS
from schemas.entity import ENTITIES, ModelEntity


def rendered() -> dict[str, str]:
    """File name (without ``.sql``) -> the statement as the templates render it."""
    found: dict[str, str] = {}
    for entity in ENTITIES.values():
        if not isinstance(entity, ModelEntity):
            continue  # an entity of another kind brings its own statements
        found[entity.apply_query] = entity_sql.apply_sql(entity)
        found[entity.insert_query] = entity_sql.insert_sql(entity)
        found[entity.plain_insert_query] = entity_sql.insert_sql(entity, plain=True)
    for action in ACTIONS.values():
        found |= action.queries()
    return dict(sorted(found.items()))


def stale(directory: Path) -> list[str]:
    """The generated files in ``directory`` that differ from their rendering (or are absent)."""
    return [
        name
        for name, text in rendered().items()
        if not (directory / f"{name}.sql").exists()
        or (directory / f"{name}.sql").read_text() != text
    ]


def write(directory: Path) -> list[str]:
    """Write the files that differ; return their names."""
    changed = stale(directory)
    texts = rendered()
    for name in changed:
        (directory / f"{name}.sql").write_text(texts[name])
    return changed
