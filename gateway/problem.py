"""RFC 9457 ``application/problem+json`` responses: the one error format every layer answers with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class ProblemResponse(Response):
    """An error as ``application/problem+json``; never carries a traceback."""

    media_type = PROBLEM_JSON

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        body: dict[str, Any] = {
            "type": type,
            "title": title or HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
        if errors is not None:
            body["errors"] = list(errors)
        body.update(extra)
        super().__init__(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)
