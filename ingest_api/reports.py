"""What ClickHouse knows of an action: stats, per-row logs, the failed rows as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import orjson

from bulkflow.clickhouse import ClickHouse, ClickHouseUnavailable
from ingest_api.csv_reader import escape_formula
from ingest_api.errors import Unavailable
from schemas.bulk_action import BulkActionStats, Counts, LogFilters, ReasonCount, RowLog

_TOP_REASONS = 10  # reasons listed per outcome in stats
_EXPORT_PAGE = 5_000  # rows per ClickHouse query while streaming an export


class Reports:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    async def _rows(self, query: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return await self._clickhouse.rows(query, parameters)
        except ClickHouseUnavailable as exc:
            raise Unavailable(
                "the outcome store (ClickHouse) is unavailable; retry shortly"
            ) from exc

    async def stats(self, account_id: str, action_id: uuid.UUID) -> BulkActionStats:
        rows = await self._rows("action_stats", {"account_id": account_id, "action_id": action_id})
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        operations: dict[str, int] = {}
        reasons: dict[str, dict[str, int]] = {"failed": {}, "skipped": {}}
        for outcome, operation, reason, count in rows:
            counts[outcome] += count
            if operation:
                operations[operation] = operations.get(operation, 0) + count
            if reason:
                by_reason = reasons[outcome]
                by_reason[reason] = by_reason.get(reason, 0) + count
        return BulkActionStats(
            id=action_id,
            recorded_rows=sum(counts.values()),
            counts=Counts(**counts),
            operations=operations,
            reasons={k: v for by in reasons.values() for k, v in by.items()},
            top_failure_reasons=_top(reasons["failed"]),
            top_skip_reasons=_top(reasons["skipped"]),
        )

    async def logs(
        self, account_id: str, action_id: uuid.UUID, filters: LogFilters, after: int, limit: int
    ) -> list[RowLog]:
        rows = await self._rows(
            "action_logs",
            {
                "account_id": account_id,
                "action_id": action_id,
                "after": max(after, filters.row_from - 1),
                "row_to": filters.row_to,
                "outcome": filters.outcome or "",
                "reason": filters.reason or "",
                "limit": limit,
            },
        )
        return [
            RowLog(
                row_no=row_no,
                outcome=outcome,
                operation=operation or None,
                reason=reason or None,
                message=message or None,
                related_row=related or None,
                key=key,
                # DateTime64(3, 'UTC'): the driver may hand it over naive.
                processed_at=processed_at.replace(tzinfo=processed_at.tzinfo or UTC),
            )
            for row_no, outcome, operation, reason, message, related, key, processed_at in rows
        ]

    async def all_logs(
        self, account_id: str, action_id: uuid.UUID, filters: LogFilters
    ) -> AsyncIterator[bytes]:
        """Every matching row as NDJSON, fetched a page at a time."""
        after = 0
        while True:
            page = await self.logs(account_id, action_id, filters, after, _EXPORT_PAGE)
            if not page:
                return
            yield b"".join(orjson.dumps(row.model_dump(mode="json")) + b"\n" for row in page)
            after = page[-1].row_no

    async def problem_rows_csv(
        self, account_id: str, action_id: uuid.UUID, columns: list[str], outcomes: list[str]
    ) -> AsyncIterator[bytes]:
        """The original columns of failed (and skipped) rows, plus row_no and error.

        A cell a spreadsheet would run as a formula gets a leading ``'``
        (:func:`escape_formula`); the CSV reader takes it off when the file
        comes back.
        """
        # The header goes out with the first page, so that the first part of
        # the body is a query's result (see routes.prefetched).
        header = _csv_line([*columns, "row_no", "error"])
        after = 0
        while True:
            rows = await self._rows(
                "action_problem_rows",
                {
                    "account_id": account_id,
                    "action_id": action_id,
                    "after": after,
                    "outcomes": outcomes,
                    "limit": _EXPORT_PAGE,
                },
            )
            if not rows:
                if header:
                    yield header
                return
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            for row_no, _, reason, message, data in rows:
                values = orjson.loads(data) if data else {}
                writer.writerow(
                    [
                        *(escape_formula(_cell(values.get(c))) for c in columns),
                        row_no,
                        escape_formula(f"{reason}: {message}"),
                    ]
                )
            yield header + out.getvalue().encode()
            header = b""
            after = rows[-1][0]


def _top(reasons: dict[str, int]) -> list[ReasonCount]:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:_TOP_REASONS]
    return [ReasonCount(reason=reason, rows=rows) for reason, rows in ranked]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _csv_line(values: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(map(escape_formula, values))
    return out.getvalue().encode()
