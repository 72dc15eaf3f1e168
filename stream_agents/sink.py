"""Writes outcome messages to ClickHouse, one insert per batch of messages.

The messages go in as they came (JSONEachRow lines of ``outcome_batches``);
a materialized view expands each into one ``row_outcomes`` row per input row,
so the sink does no per-row work. Redelivered messages insert identical rows,
which the table's ReplacingMergeTree collapses: the sink needs no state of its
own. A failed insert is retried at the fixed interval until ClickHouse takes
it: the sink has nowhere else to put outcomes, and holding the batch is what
keeps them. Only a message that cannot be decoded at all is dropped (logged),
so that it cannot hold up every outcome behind it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from bulkflow import constants
from bulkflow.clickhouse import ClickHouse
from schemas.messages import OutcomeBatch

log = logging.getLogger(__name__)

TABLE = "bulkflow.outcome_batches"


class OutcomeSink:
    def __init__(self, clickhouse: ClickHouse, interval: float = constants.RETRY_INTERVAL) -> None:
        self._clickhouse = clickhouse
        self._interval = interval

    async def write(self, messages: Sequence[bytes]) -> int:
        """Insert the outcomes of the messages; return the number of messages written."""
        attempt = 0
        while messages:
            attempt += 1
            try:
                await self._clickhouse.insert_json(TABLE, b"\n".join(messages))
                return len(messages)
            except Exception:
                log.exception("ClickHouse insert failed (attempt %d)", attempt)
            # Only now, off the hot path: is the data at fault, or ClickHouse?
            decodable = [m for m in messages if _decodes(m)]
            if len(decodable) < len(messages):
                log.error(
                    "skipping %d undecodable outcome messages", len(messages) - len(decodable)
                )
                messages = decodable
                continue
            await asyncio.sleep(self._interval)
        return 0


def _decodes(message: bytes) -> bool:
    try:
        uuid.UUID(OutcomeBatch.from_bytes(message).action_id)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False
    return True
