"""Helpers for the agents' tests: chunks, and a dead-letter queue that keeps what it is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.messages import Chunk


def chunk(
    action_id: str,
    acct: str,
    chunk_no: int,
    first_row_no: int,
    rows: list[dict[str, Any]],
    action: str = "upsert",
) -> Chunk:
    return Chunk(action_id, acct, "contact", action, chunk_no, first_row_no, rows)


class KeptLetters:
    """Stands in for the Kafka dead-letter topic where a test needs no broker."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.errors: list[BaseException] = []

    async def send_chunks(self, chunks: Sequence[Chunk], error: BaseException) -> None:
        self.chunks += chunks
        self.errors.append(error)
