"""A row model's field rules as checks on whole columns (Arrow compute kernels).

A rule is derived from the field's type and constraints in the pydantic model
itself, so the model stays the one definition of what a field accepts. A rule
is *conservative*: it accepts a value only where the model certainly accepts
it and turns it into the same value; anything else (a value it cannot judge,
or one that is wrong) is left to the model, row by row, which gives the exact
reason and message. A field with a validator no rule knows has no rule: its
given values all go to the model.

Whitespace: the model strips a string with Rust's ``trim`` (Unicode
White_Space); a display key is Python's ``str.strip``, which also strips
U+001C..U+001F. Both sets are spelled out below.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import StringConstraints
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator, BeforeValidator

#: What pydantic's str_strip_whitespace strips (Unicode White_Space).
MODEL_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: What Python's str.strip strips: the model's set and the four separators.
PYTHON_WHITESPACE = MODEL_WHITESPACE + "\x1c\x1d\x1e\x1f"


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """Marks a validator of a str field with the column check that stands for it.

    ``check`` takes the stripped values and says where they are certainly
    valid (false where it cannot tell: the model decides those).
    """

    check: Callable[[pa.StringArray], pa.BooleanArray]


class Checked(typing.NamedTuple):
    """A column checked: where its values are certainly valid, and those values."""

    valid: pa.BooleanArray  # null where the cell is null
    values: pa.Array


class Rule(typing.Protocol):
    def check(self, cells: pa.StringArray) -> Checked: ...


@dataclass(frozen=True, slots=True)
class TextRule:
    min_length: int | None
    max_length: int | None
    check_values: ColumnCheck | None = None

    def check(self, cells: pa.StringArray) -> Checked:
        values = pc.utf8_trim(cells, characters=MODEL_WHITESPACE)
        length = pc.utf8_length(values)
        valid = pc.is_valid(values)
        if self.max_length is not None:
            valid = pc.and_(valid, pc.less_equal(length, self.max_length))
        if self.min_length is not None:
            valid = pc.and_(valid, pc.greater_equal(length, self.min_length))
        if self.check_values is not None:
            valid = pc.and_(valid, self.check_values.check(values))
        return Checked(valid, values)


@dataclass(frozen=True, slots=True)
class IntegerRule:
    """Digits as a canonical integer (no sign, spaces or leading zeros) within bounds."""

    ge: int | None
    le: int | None

    def check(self, cells: pa.StringArray) -> Checked:
        # Kernels, not a regex: RE2 compiles its pattern on every call.
        length = pc.utf8_length(cells)
        valid = pc.and_(pc.string_is_ascii(cells), pc.utf8_is_digit(cells))
        canonical = pc.or_(pc.equal(length, 1), pc.invert(pc.starts_with(cells, "0")))
        valid = pc.and_(pc.and_(valid, canonical), pc.less_equal(length, 18))
        values = pc.cast(pc.if_else(valid, cells, None), pa.int64())
        if self.ge is not None:
            valid = pc.and_(valid, pc.greater_equal(values, self.ge))
        if self.le is not None:
            valid = pc.and_(valid, pc.less_equal(values, self.le))
        return Checked(valid, values)


@dataclass(frozen=True, slots=True)
class ChoiceRule:
    """One of the literals, exactly as written (the model does not strip them)."""

    choices: tuple[str, ...]

    def check(self, cells: pa.StringArray) -> Checked:
        valid = pc.is_in(cells, value_set=pa.array(self.choices, type=pa.string()))
        return Checked(pc.if_else(pc.is_valid(cells), valid, None), cells)


def rule_for(field: FieldInfo) -> Rule | None:
    """The column rule of a model field, or None: its values go to the model."""
    base, metadata = _unwrap(field.annotation)
    metadata = [*metadata, *field.metadata]
    if any(isinstance(m, BeforeValidator) for m in metadata):
        return None
    patterns = [m for m in metadata if isinstance(m, ColumnCheck)]
    validators = [m for m in metadata if isinstance(m, AfterValidator)]
    if len(validators) > len(patterns):  # a validator no column check stands for
        return None
    if base is str:
        lengths = [m for m in metadata if isinstance(m, StringConstraints)]
        minimum = [m.min_length for m in lengths if m.min_length is not None]
        maximum = [m.max_length for m in lengths if m.max_length is not None]
        return TextRule(
            max(minimum, default=None), min(maximum, default=None), next(iter(patterns), None)
        )
    if base is int and not patterns:
        ge = [int(m.ge) for m in metadata if isinstance(m, annotated_types.Ge)]  # type: ignore[call-overload]
        le = [int(m.le) for m in metadata if isinstance(m, annotated_types.Le)]  # type: ignore[call-overload]
        return IntegerRule(max(ge, default=None), min(le, default=None))
    if get_origin(base) is Literal and not patterns:
        choices = get_args(base)
        if all(isinstance(c, str) for c in choices):
            return ChoiceRule(choices)
    return None


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, ...] | None`` -> (X, the metadata), constraints of nested
    Field()s included."""
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            return annotation, []
        annotation = options[0]
    metadata: list[Any] = []
    if get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
    flat: list[Any] = []
    for item in metadata:
        flat += [item, *item.metadata] if isinstance(item, FieldInfo) else [item]
    return annotation, flat
