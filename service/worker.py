"""A gunicorn worker class running the service as the Procfile does (uvicorn, with the service's HTTP
protocol): ``gunicorn service.main:app -k service.worker.UvicornWorker``."""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker as _UvicornWorker


# uvicorn-worker ships no types.
class UvicornWorker(_UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: dict[str, Any] = {**_UvicornWorker.CONFIG_KWARGS, "http": "service.protocol:HttpProtocol"}
