"""Response helpers shared by the service's handlers."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway import ProblemResponse
from service.schemas import field_errors


class JSON(Response):
    """JSON through orjson: about twenty times faster than ``json.dumps`` for a listing."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def validation_problem(errors: list[dict[str, str]], detail: str = "The request is not valid.") -> ProblemResponse:
    return ProblemResponse(422, detail, title="Unprocessable Content", errors=errors)


async def parse_body(request: Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    """The validated body, or a ``ProblemResponse`` (422) to return as is."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return model()
        return validation_problem([{"field": "body", "message": "a JSON object is required"}])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return validation_problem([{"field": "body", "message": f"malformed JSON: {exc.msg}"}], "Malformed JSON.")
    if not isinstance(data, dict):
        return validation_problem([{"field": "body", "message": "must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return validation_problem(field_errors(exc))
