"""SQL kept in ``.sql`` files, loaded once by name.

``sql/queries/<name>.sql`` holds Postgres statements (``$1`` parameters);
``clickhouse/queries/<name>.sql`` holds ClickHouse ones (``{name:Type}``
parameters). Numbered files directly under ``sql/`` and ``clickhouse/`` are
migrations, applied by :mod:`bulkflow.migrations`.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from bulkflow import PROJECT_ROOT

POSTGRES_DIR = PROJECT_ROOT / "sql"
CLICKHOUSE_DIR = PROJECT_ROOT / "clickhouse"
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@cache
def postgres(name: str) -> str:
    return (POSTGRES_DIR / "queries" / f"{name}.sql").read_text()


@cache
def clickhouse(name: str) -> str:
    return (CLICKHOUSE_DIR / "queries" / f"{name}.sql").read_text()


def migrations(directory: Path) -> list[tuple[int, Path]]:
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
