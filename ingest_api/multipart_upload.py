"""A CSV sent as multipart/form-data, streamed: the option fields, then the file's bytes.

Starlette's ``request.form()`` spools every file part whole to a temporary
file before the handler sees a field: a 1 GB upload with a missing option
landed in /tmp before its 422. Here python-multipart's push parser runs on the
body as it arrives: the fields before the ``file`` part are read (small, and
bounded), checked by the caller, and only then are the file part's bytes
passed on, a body block at a time, to the CSV reader. Nothing is written to
disk and nothing is buffered beyond a block.

So the fields must come before the file part (curl ``-F`` and the usual HTTP
clients send them in that order); a field after it is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from bulkflow import constants
from ingest_api.errors import InvalidMultipart, ValidationFailed

FILE_PART = "file"

#: What the parser's callbacks report: ("headers", name, filename), ("data", bytes), ("end",).
_Event = tuple[Any, ...]


class MultipartUpload:
    """``await upload.fields()`` first, then ``upload.file()``: the file part's bytes."""

    def __init__(self, content_type: str, body: AsyncIterator[bytes]) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise InvalidMultipart("the multipart/form-data content type has no boundary")
        self._body = body
        self._pending: list[_Event] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_part,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )
        self._events = self._parsed()

    async def fields(self) -> dict[str, str]:
        """The fields before the file part; 422 if there is no file part or a field is bad."""
        fields: dict[str, str] = {}
        name: str | None = None
        value = bytearray()
        async for event in self._events:
            if event[0] == "headers":
                name, filename = event[1], event[2]
                if name == FILE_PART:
                    return fields
                if filename is not None:
                    raise _field_error(name, f"only the {FILE_PART!r} part may be a file")
                if len(fields) >= constants.MAX_FORM_FIELDS:
                    raise _field_error(name, f"at most {constants.MAX_FORM_FIELDS} fields")
                value = bytearray()
            elif event[0] == "data" and name is not None:
                value += event[1]
                if len(value) > constants.MAX_FORM_FIELD_BYTES:
                    raise _field_error(
                        name, f"longer than {constants.MAX_FORM_FIELD_BYTES:,} bytes"
                    )
            elif event[0] == "end" and name is not None:
                try:
                    fields[name] = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise _field_error(name, "not UTF-8") from None
                name = None
        raise ValidationFailed(
            f"a multipart upload needs a {FILE_PART!r} part",
            [{"loc": [FILE_PART], "msg": "Field required", "type": "missing"}],
        )

    async def file(self) -> AsyncIterator[bytes]:
        """The file part's bytes as they arrive; after :meth:`fields`."""
        async for event in self._events:
            if event[0] == "data":
                yield event[1]
            elif event[0] == "end":
                break
        async for event in self._events:  # the rest of the body: no more parts
            if event[0] == "headers":
                raise InvalidMultipart(
                    f"the field {event[1]!r} comes after the {FILE_PART!r} part:"
                    " send the fields first"
                )

    async def _parsed(self) -> AsyncIterator[_Event]:
        try:
            async for block in self._body:
                self._parser.write(block)
                events, self._pending = self._pending, []
                for event in events:
                    yield event
            self._parser.finalize()
        except ValueError as exc:  # python-multipart's parse errors
            raise InvalidMultipart(f"the multipart body cannot be read: {exc}") from None
        for event in self._pending:
            yield event

    # --- the parser's callbacks ------------------------------------------------

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._pending.append(("headers", name, filename))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._pending.append(("data", data[start:end]))

    def _part_end(self) -> None:
        self._pending.append(("end",))


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"the form field {name!r} is invalid: {message}",
        [{"loc": [name], "msg": message, "type": "value_error"}],
    )
