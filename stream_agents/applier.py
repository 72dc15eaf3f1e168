"""Apply chunks and publish their outcomes: shared by the Kafka agent and the drainer.

The batch processor waits out database outages and retries transient
failures; when a batch fails for good its rows fail, and its chunks are
dead-lettered for ``bulkflow dead-letters replay``.

Publishing the outcomes is retried at the fixed interval until the broker has
them, whatever the error: the batch is acknowledged when this returns, and
outcomes dropped here would be missing from ClickHouse for good. An error the
producer cannot recover from replaces it (``bulkflow/kafka.py``), so the
next attempt goes through a fresh one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from bulkflow import constants, logs, metrics
from bulkflow.retry import persistently
from schemas.messages import Chunk, OutcomeBatch
from stream_agents.batch import BatchProcessor
from stream_agents.outcomes import OutcomePublisher
from stream_agents.turn import Turn

log = logging.getLogger(__name__)


class Applier:
    def __init__(
        self,
        processor: BatchProcessor,
        publisher: OutcomePublisher,
        *,
        interval: float = constants.RETRY_INTERVAL,
    ) -> None:
        self.processor = processor
        self._publisher = publisher
        self._interval = interval

    async def apply(
        self,
        chunks: list[Chunk],
        *,
        turn: Turn | None = None,
        after: Turn | None = None,
        drained: bool = False,
    ) -> None:
        """``after``: the turn of the batch before, which this one may write ahead
        of; ``turn``: this one's, settled before its outcomes are published;
        ``drained``: no more chunks were waiting (the outcomes say so to the sink)."""
        turn = turn or Turn()
        with logs.context(**_subject(chunks)):
            started = time.perf_counter()
            try:
                outcomes = await self.processor.process(chunks, turn=turn, after=after)
            except Exception as exc:
                log.exception("a batch of %d chunks failed", len(chunks))
                turn.faltered.set()
                if after is not None:
                    await after.settled.wait()  # its failure is recorded after that one
                outcomes = await self.processor.fail(chunks, exc)
            if after is not None:
                await after.settled.wait()  # settled means every batch before it has too
            turn.prepared.set()  # if no attempt prepared rows (each chunk replayed or held)
            turn.settled.set()
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            _count(outcomes)
            await self._publish(outcomes, drained)

    async def _publish(self, outcomes: list[OutcomeBatch], drained: bool) -> None:
        await persistently(
            f"publishing the outcomes of {len(outcomes)} chunks",
            lambda: self._publisher.publish(outcomes, drained=drained),
            interval=self._interval,
        )


def _subject(chunks: list[Chunk]) -> dict[str, Any]:
    """What a batch works on, for its log records: the action (account, chunk) if only one."""
    if not chunks or any(c.action_id != chunks[0].action_id for c in chunks):
        accounts = {c.account_id for c in chunks}
        return {"account_id": accounts.pop()} if len(accounts) == 1 else {}
    first = chunks[0]
    subject: dict[str, Any] = {"action_id": first.action_id, "account_id": first.account_id}
    if len(chunks) == 1:
        subject["chunk_no"] = first.chunk_no
    return subject


def _count(outcomes: list[OutcomeBatch]) -> None:
    """Rows by outcome and reason: per chunk (str.count), reasons from its problem rows only."""
    rows = succeeded = 0
    problems: Counter[tuple[str, str]] = Counter()
    for batch in outcomes:
        codes = batch.codes
        rows += len(codes)
        succeeded += len(codes) - codes.count("f") - codes.count("s")
        for index, problem in batch.problems.items():
            outcome = "failed" if codes[index] == "f" else "skipped"
            problems[outcome, problem.reason] += 1
    if succeeded:
        metrics.ROWS.labels("succeeded", "").inc(succeeded)
    for (outcome, reason), count in problems.items():
        metrics.ROWS.labels(outcome, reason).inc(count)
    metrics.BATCH_ROWS.observe(rows)
