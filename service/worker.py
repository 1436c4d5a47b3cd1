"""A gunicorn worker class running the service as the Procfile does (uvicorn, with the service's HTTP
protocol, so its read deadlines on slow clients hold here too): ``gunicorn service.main:app -k
service.worker.UvicornWorker``."""

from __future__ import annotations

from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]  # gunicorn ships no types
from uvicorn_worker import UvicornWorker as _UvicornWorker


# uvicorn-worker ships no types.
class UvicornWorker(_UvicornWorker):  # type: ignore[misc]
    """uvicorn-worker's worker with the service's HTTP protocol; a bad setting halts gunicorn."""

    CONFIG_KWARGS: dict[str, Any] = {**_UvicornWorker.CONFIG_KWARGS, "http": "service.protocol:HttpProtocol"}

    def load_wsgi(self) -> None:
        try:
            super().load_wsgi()
        except SystemExit as exc:
            # service.main stops on a bad setting with one line and exit status 2. Passed on as it is, the
            # arbiter would boot a new worker for ever, each printing the line again; this status halts it.
            if exc.code == 2:
                raise SystemExit(Arbiter.APP_LOAD_ERROR) from None
            raise
