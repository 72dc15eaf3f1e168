"""Schemathesis hooks for the OpenAPI test: how to send a ``text/csv`` body."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("text/csv")
def csv_body(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(str(value), "utf-8")
