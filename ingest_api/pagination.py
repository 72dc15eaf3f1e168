"""Opaque cursors: the position after the last item of a page, base64url of JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from ingest_api.errors import ValidationFailed


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        position = None
    if not isinstance(position, list):
        raise ValidationFailed(
            "the cursor is not valid", [{"loc": ["cursor"], "msg": "not a cursor"}]
        )
    return position
