"""A batch's turn among an agent's batches: what the batch after it may do, and when.

An agent applies its batches in order, but the next one does not wait for the
one before to commit (``stream_agents/pipeline.py``). Once every row of a batch
is prepared (its keys are in the key filters), the next batch reads, prepares
and inserts its new rows: rows whose key and external id their action never
had, so nothing the batch before writes waits for them, nor they for it. The
rest of its writes, its ledger rows and its counts wait until the batch before
has settled, and then only if what the batch read at its start still holds
(the ledger had none of its chunks, its actions' states are unchanged).
Otherwise, or if the batch before failed an attempt, it rolls back and starts
again, the batch before settled: it wrote nothing that anyone saw.

Writing ahead is for two batches that could not write one key both: every
account in them has one action in all (two actions of an account could share
a key, each batch writing it the way the other waits for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from schemas.messages import Chunk


class Overtaken(Exception):
    """The batch before failed an attempt, or changed what this one had read: this
    attempt rolls back and the batch starts again once the one before has settled."""


class Turn:
    def __init__(self) -> None:
        #: Every row is prepared: the batch after may prepare its own.
        self.prepared = asyncio.Event()
        #: Committed, or its failure recorded; and so is every batch before it.
        self.settled = asyncio.Event()
        #: An attempt failed: a batch writing ahead of its settling rolls back.
        self.faltered = asyncio.Event()
        #: Whether it put chunks in the backlog, which the next admission must see.
        self.deferring = False
        self._actions: dict[str, set[str]] = {}

    def take(self, chunks: Iterable[Chunk]) -> None:
        """The chunks this turn applies (their accounts' actions)."""
        for chunk in chunks:
            self._actions.setdefault(chunk.account_id, set()).add(chunk.action_id)

    def may_write_ahead_of(self, before: Turn) -> bool:
        """Whether this turn's new rows may go in before ``before`` settles."""
        if before.settled.is_set() or before.faltered.is_set():
            return False
        for account, actions in self._actions.items():
            if len(actions | before._actions.get(account, set())) > 1:
                return False
        return True

    async def outcome(self) -> None:
        """Wait until it settles or falters; raise :class:`Overtaken` if it faltered."""
        settled = asyncio.ensure_future(self.settled.wait())
        faltered = asyncio.ensure_future(self.faltered.wait())
        try:
            await asyncio.wait({settled, faltered}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()
            faltered.cancel()
        if self.faltered.is_set():
            raise Overtaken()
