"""How a bulk action's rows are read: options, and how column names are compared.

Apart from the other request bodies because the entity and action registries
build on it, and the request bodies build on those registries.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_SEPARATORS = re.compile(r"[\s_-]+")


def column_key(name: str) -> str:
    """What a column name is compared by: case, spaces, ``-`` and ``_`` aside.

    So the headers people write name the fields: "First Name", "first-name"
    and "FIRST_NAME" are all ``first_name``.
    """
    return _SEPARATORS.sub("_", name.strip().lower())


class ActionOptions(BaseModel):
    """How rows are read and applied; stored with the action, carried by every chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Source column -> entity field (both compared by :func:`column_key`).
    mapping: dict[str, str] = Field(default_factory=dict)
    #: An empty value (or an absent JSON key) leaves the stored value unchanged.
    ignore_empty: bool = True
    #: A CSV cell equal to this clears the stored value (JSON uses null).
    clear_token: str | None = None
    #: Columns that are neither fields nor mapped: kept in custom_fields, or ignored.
    unmapped: Literal["custom_fields", "ignore"] = "custom_fields"
    #: The field rows are matched on: the entity's identifier (default), or
    #: "external_id", or "id".
    match_on: str | None = None

    def normalised_mapping(self) -> dict[str, str]:
        """The mapping by :func:`column_key`, as headers are compared."""
        return {column_key(k): column_key(v) for k, v in self.mapping.items()}
