"""SQL kept in ``.sql`` files, loaded once by name.

``sql/queries/<name>.sql`` holds Postgres statements (``$1`` parameters);
``clickhouse/queries/<name>.sql`` holds ClickHouse ones (``{name:Type}``
parameters). Numbered files directly under ``sql/`` and ``clickhouse/`` are
migrations, applied by :mod:`bulkflow.migrations`.

They are package data: ``bulkflow/_postgres`` and ``bulkflow/_clickhouse``
link to the top-level folders in a checkout, and an installed wheel carries
their files there; either way they are read through ``importlib.resources``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.abc import Traversable

POSTGRES_DIR: Traversable = resources.files("bulkflow") / "_postgres"
CLICKHOUSE_DIR: Traversable = resources.files("bulkflow") / "_clickhouse"
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@cache
def postgres(name: str) -> str:
    return (POSTGRES_DIR / "queries" / f"{name}.sql").read_text()


@cache
def clickhouse(name: str) -> str:
    return (CLICKHOUSE_DIR / "queries" / f"{name}.sql").read_text()


def migrations(directory: Traversable) -> list[tuple[int, Traversable]]:
    """The numbered migration files of a directory, in order."""
    found = []
    for path in directory.iterdir():
        match = _MIGRATION.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def statements(script: str) -> list[str]:
    """Split a script into statements: each ends with ``;`` at the end of a line.

    Full-line ``--`` comments are dropped first, so they may contain anything.
    ClickHouse runs one statement per request; Postgres scripts run whole.
    """
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";[ \t]*$", "\n".join(lines), flags=re.MULTILINE)
    return [part.strip() for part in parts if part.strip()]
