"""Log set-up for every ``bulkflow`` command: JSON lines for machines, text for people.

``BULKFLOW_LOG_FORMAT=json`` writes one JSON object per line: ``time`` (UTC,
ISO 8601), ``level``, ``role`` (the roles of the process), ``logger``,
``message``, and whichever of ``action_id``, ``account_id``, ``chunk_no`` and
``request_id`` the code running at the time set (``context``), plus
``exception`` with the traceback. ``text`` writes one line per record for
people; ``auto`` (the default) picks text on a terminal, JSON otherwise.

What is logged never includes row values or secrets: log messages name
actions, accounts, chunks and error classes, not the rows' data (the rows'
reasons go to their outcomes in ClickHouse, not to the log). Settings print
their secrets masked (``SecretStr``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import orjson

#: What the running code works on: set per request (API) or per batch (agents).
ACTION_ID: Final[ContextVar[str | None]] = ContextVar("action_id", default=None)
ACCOUNT_ID: Final[ContextVar[str | None]] = ContextVar("account_id", default=None)
CHUNK_NO: Final[ContextVar[int | None]] = ContextVar("chunk_no", default=None)
REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("request_id", default=None)
_FIELDS: Final = (
    ("action_id", ACTION_ID),
    ("account_id", ACCOUNT_ID),
    ("chunk_no", CHUNK_NO),
    ("request_id", REQUEST_ID),
)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"


@contextmanager
def context(
    *,
    action_id: str | None = None,
    account_id: str | None = None,
    chunk_no: int | None = None,
) -> Iterator[None]:
    """Name what the block works on in every log record it makes; unset afterwards."""
    tokens: list[Callable[[], None]] = []
    if action_id is not None:
        action_token = ACTION_ID.set(action_id)
        tokens.append(lambda: ACTION_ID.reset(action_token))
    if account_id is not None:
        account_token = ACCOUNT_ID.set(account_id)
        tokens.append(lambda: ACCOUNT_ID.reset(account_token))
    if chunk_no is not None:
        chunk_token = CHUNK_NO.set(chunk_no)
        tokens.append(lambda: CHUNK_NO.reset(chunk_token))
    try:
        yield
    finally:
        for reset in reversed(tokens):
            reset()


class _ContextFilter(logging.Filter):
    """Copies the context variables onto each record (``record.bulkflow``)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self._role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self._role
        fields = {name: value for name, var in _FIELDS if (value := var.get()) is not None}
        record.bulkflow = fields
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        record.context = f" [{text}]" if text else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "role": getattr(record, "role", ""),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "bulkflow", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, fmt: str, role: str) -> None:
    """Set up the root logger of a ``bulkflow`` process (once, at start-up)."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter(role))
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in ("httpx", "httpcore"):  # one line per request drowns the demo's progress
        logging.getLogger(chatty).setLevel(logging.WARNING)
