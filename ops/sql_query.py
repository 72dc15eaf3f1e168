"""``bulkflow sql "SELECT ..."``: a query of the outcomes, printed as a table, CSV or JSON.

It connects as any other client would, with clickhouse-connect: to the
ClickHouse server of ``BULKFLOW_CLICKHOUSE_URL``, or, with the embedded engine,
to the front of the process that holds it (read-only, with its password and
query limits; see ``bulkflow/clickhouse_front.py``). It never opens the
embedded engine itself: that belongs to the running sink.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
import orjson

from bulkflow.clickhouse_front import front_client_url
from bulkflow.settings import Settings

FORMATS = ("table", "csv", "json")
_MAX_CELL = 60  # characters of a cell in the table; CSV and JSON keep them whole


def client_url(settings: Settings) -> str:
    """Where the outcomes are served: the front of the embedded engine, or the server."""
    return front_client_url(settings) if settings.embedded_clickhouse else settings.clickhouse_dsn


def run_query(settings: Settings, query: str) -> tuple[list[str], list[Sequence[Any]]]:
    client = clickhouse_connect.get_client(dsn=client_url(settings))
    try:
        result = client.query(query)
        return list(result.column_names), list(result.result_rows)
    finally:
        client.close()


def render(columns: list[str], rows: list[Sequence[Any]], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v) for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        objects = [dict(zip(columns, row, strict=True)) for row in rows]
        return orjson.dumps(objects, default=str, option=orjson.OPT_INDENT_2).decode() + "\n"
    return _table(columns, rows)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat())
    return str(value)


def _table(columns: list[str], rows: list[Sequence[Any]]) -> str:
    """Aligned columns, numbers to the right; a row count under them."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) for row in rows if row[i] is not None)
        for i in range(len(columns))
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    text = _text(value).replace("\n", "\\n")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"
