"""Request bodies and parameters through pydantic, errors in the one API shape."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ingest_api.errors import ValidationFailed

MAX_ERRORS = 50  # validation errors listed in one response
Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any, message: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ValidationFailed(message, details[:MAX_ERRORS]) from None
