"""Logging: one JSON object per line in production, readable lines in development; every record
carries the request id; nothing that looks like a token, code or secret gets through."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from gateway import request_id

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    """Belt and braces: the code never logs credentials, and this removes any that slip in."""
    return _JWT.sub("[token]", _BEARER.sub(r"\1[token]", text))


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(*, production: bool, level: str) -> None:
    """Our handler on the root logger and on uvicorn's loggers (which uvicorn set up before us)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The service writes its own access log (service/accesslog.py, ACCESS_LOG); uvicorn's would be a
    # second line per request (uvicorn turns its own on whenever the logger has a handler, even
    # through propagation, whatever --no-access-log said).
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
