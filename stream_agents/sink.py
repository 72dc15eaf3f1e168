"""Writes outcome messages to ClickHouse, one insert per batch of messages.

The messages go in as they came: each holds the outcomes of one or more
chunks, a JSONEachRow line of ``outcome_batches`` per chunk
(:mod:`stream_agents.outcomes`); a materialized view expands each line into
one ``row_outcomes`` row per input row, so the sink does no per-row work.
Redelivered messages insert identical rows, which the table's
ReplacingMergeTree collapses: the sink needs no state of its own. Nothing
is dropped:

- while ClickHouse does not answer, the batch waits for it, however long
  (the batch is acknowledged only when ``write`` returns);
- while it answers but refuses the insert, the insert is retried at the fixed
  interval; then, so that one bad message cannot hold up every outcome behind
  it, the messages it refuses are found by halving the batch and go to the
  dead-letter topic as they came, and the others are written.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator, Sequence

from bulkflow import constants, metrics
from bulkflow.clickhouse import ClickHouse
from bulkflow.retry import until_answers
from schemas.messages import OutcomeBatch
from stream_agents.dead_letters import DeadLetterQueue

log = logging.getLogger(__name__)

TABLE = "bulkflow.outcome_batches"


class OutcomeSink:
    def __init__(
        self,
        clickhouse: ClickHouse,
        dead_letters: DeadLetterQueue,
        topic: str,
        *,
        interval: float = constants.RETRY_INTERVAL,
        attempts: int = constants.RETRY_ATTEMPTS,
    ) -> None:
        self._clickhouse = clickhouse
        self._dead_letters = dead_letters
        self._topic = topic
        self._interval = interval
        self._attempts = attempts

    async def write(self, messages: Sequence[bytes]) -> int:
        """Insert the outcomes of the messages; return how many messages were written.

        The others were dead-lettered: ClickHouse refused them while it answered.
        """
        written: list[bytes] = []
        with metrics.SINK_INSERT_SECONDS.time():
            for part in _inserts(messages):
                if await self._insert(part, attempts=self._attempts):
                    written += part
                else:
                    written += await self._isolate(part)
        # Counted per chunk, as when a message was one chunk's: a message now
        # holds a JSON line per chunk, and dashboards chart chunks per second.
        metrics.SINK_MESSAGES.inc(sum(message.count(b"\n") + 1 for message in written))
        return len(written)

    async def _insert(self, messages: Sequence[bytes], *, attempts: int) -> bool:
        """Insert, waiting out outages; False if ClickHouse refused it ``attempts`` times."""
        attempt = 0
        while True:
            try:
                await self._clickhouse.insert_json(TABLE, b"\n".join(messages))
                return True
            except Exception as exc:
                if await self._waited_out(exc):
                    continue  # an outage spends no attempt
                attempt += 1
                log.warning("ClickHouse refused an insert (attempt %d): %r", attempt, exc)
                if attempt >= attempts:
                    return False
            await asyncio.sleep(self._interval)

    async def _isolate(self, messages: Sequence[bytes]) -> list[bytes]:
        """Write what ClickHouse takes of messages it refused together; dead-letter the rest.

        Returns the messages written.
        """
        undecodable = [m for m in messages if not _decodes(m)]
        for message in undecodable:
            await self._dead_letters.send_undecodable(
                self._topic, message, ValueError("not an outcome message")
            )
        pending = [m for m in messages if _decodes(m)]
        if not pending:
            return []
        if await self._insert(pending, attempts=1):
            return pending
        if len(pending) == 1:
            await self._dead_letters.send_undecodable(
                self._topic, pending[0], ValueError("ClickHouse refused this outcome message")
            )
            return []
        half = len(pending) // 2
        return await self._isolate(pending[:half]) + await self._isolate(pending[half:])

    async def _waited_out(self, exc: BaseException) -> bool:
        """If ClickHouse does not answer, wait until it does; whether it was away."""
        try:
            await self._clickhouse.ping()
        except Exception:
            log.warning("ClickHouse is unreachable (%r); the outcomes wait for it", exc)
            await until_answers(self._clickhouse.ping, "ClickHouse", interval=self._interval)
            return True
        return False


def _inserts(messages: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    """Consecutive runs of messages of at most SINK_INSERT_BYTES (one message at least)."""
    start, size = 0, 0
    for index, message in enumerate(messages):
        if size and size + len(message) > constants.SINK_INSERT_BYTES:
            yield messages[start:index]
            start, size = index, 0
        size += len(message)
    if start < len(messages):
        yield messages[start:]


def _decodes(message: bytes) -> bool:
    """Whether every line of the message is an outcome batch (orjson escapes newlines)."""
    try:
        for line in message.split(b"\n"):
            uuid.UUID(OutcomeBatch.from_bytes(line).action_id)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False
    return True
