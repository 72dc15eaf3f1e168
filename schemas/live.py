"""Live progress events: what WebSocket and SSE subscribers receive for an action."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from schemas.bulk_action import Counts, Status

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class EventProgress(BaseModel):
    processed: int
    total: int | None
    percent: float | None


class ActionEvent(BaseModel):
    """One change of an action's status or counts.

    ``event_id`` numbers the action's changes (1, 2, ...): a larger one is a
    later state. It is the SSE event id, and ``Last-Event-ID`` on resume.
    """

    id: UUID
    event_id: int
    status: Status
    progress: EventProgress
    counts: Counts

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, values: dict[str, Any] | Any) -> ActionEvent:
        """From the trigger's notification or a ``bulk_actions`` record (same keys)."""
        processed, total = values["processed"], values["total"]
        return cls(
            id=values["id"],
            event_id=values["seq"],
            status=values["status"],
            progress=EventProgress(
                processed=processed,
                total=total,
                percent=round(100 * processed / total, 1)
                if total
                else (100.0 if total == 0 else None),
            ),
            counts=Counts(
                succeeded=values["succeeded"], failed=values["failed"], skipped=values["skipped"]
            ),
        )


class SocketEvent(BaseModel):
    """``{"type": "actionUpdate", "action": {...}}`` on the WebSocket."""

    type: Literal["actionUpdate"] = "actionUpdate"
    action: ActionEvent
