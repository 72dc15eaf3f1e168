"""Writes outcome messages to ClickHouse, one column-oriented insert per batch.

Redelivered messages insert identical rows, which the table's
ReplacingMergeTree collapses, so the sink needs no state of its own. A failed
insert is retried at the fixed interval until ClickHouse takes it: the sink
has nowhere else to put outcomes, and holding the batch is what keeps them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from schemas.messages import CODES, OutcomeBatch

log = logging.getLogger(__name__)

TABLE = "bulkflow.row_outcomes"
_OUTCOME = {code: outcome.value for code, (outcome, _) in CODES.items()}
_OPERATION = {code: operation.value if operation else "" for code, (_, operation) in CODES.items()}


def columns(batches: Sequence[OutcomeBatch]) -> dict[str, list[Any]]:
    """The outcome rows of the batches as ClickHouse columns."""
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "account_id",
            "action_id",
            "row_no",
            "entity",
            "action",
            "outcome",
            "operation",
            "reason",
            "message",
            "related_row",
            "entity_key",
            "row_data",
            "processed_at",
        )
    }
    for batch in batches:
        size = len(batch.codes)
        action_id = uuid.UUID(batch.action_id)
        processed_at = datetime.fromtimestamp(batch.processed_at, UTC)
        cols["account_id"] += [batch.account_id] * size
        cols["action_id"] += [action_id] * size
        cols["row_no"] += range(batch.first_row_no, batch.first_row_no + size)
        cols["entity"] += [batch.entity] * size
        cols["action"] += [batch.action] * size
        cols["outcome"] += [_OUTCOME[c] for c in batch.codes]
        cols["operation"] += [_OPERATION[c] for c in batch.codes]
        cols["entity_key"] += batch.keys
        cols["processed_at"] += [processed_at] * size
        reasons, messages, related, data = [""] * size, [""] * size, [0] * size, [""] * size
        for index, problem in batch.problems.items():
            reasons[index] = problem.reason
            messages[index] = problem.message
            related[index] = problem.related_row
            data[index] = orjson.dumps(batch.rows.get(index, {})).decode()
        cols["reason"] += reasons
        cols["message"] += messages
        cols["related_row"] += related
        cols["row_data"] += data
    return cols


class OutcomeSink:
    def __init__(self, clickhouse: ClickHouse, interval: float = constants.RETRY_INTERVAL) -> None:
        self._clickhouse = clickhouse
        self._interval = interval

    async def write(self, messages: Sequence[bytes]) -> int:
        """Insert the outcomes of the messages; return the number of rows written."""
        batches = []
        for message in messages:
            try:
                batches.append(OutcomeBatch.from_bytes(message))
            except (ValueError, TypeError, KeyError):
                log.exception("skipping an outcome message that cannot be decoded")
        if not batches:
            return 0
        cols = columns(batches)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._clickhouse.insert(TABLE, cols)
                return len(cols["row_no"])
            except Exception:
                log.exception("ClickHouse insert failed (attempt %d); retrying", attempt)
                await asyncio.sleep(self._interval)
