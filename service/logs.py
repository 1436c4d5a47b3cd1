"""Logging: one JSON object per line in production, readable lines in development; every record
carries the request id; nothing that looks like a token, code or secret gets through."""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import unquote

import orjson

from gateway.requestid import request_id

_BEARER = re.compile(r"(?i)(bearer[\s+.]+)([A-Za-z0-9._~+/=-]+)")  # also a WebSocket's bearer.<token>
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_HEX = re.compile(r"%[0-9A-Fa-f]{2}")
#: A URL may be percent-encoded more than once on its way (``%252E`` is ``%2E`` is ``.``).
_DECODE_ROUNDS = 3


def _redact_plain(text: str) -> str:
    return _JWT.sub("[token]", _BEARER.sub(r"\1[token]", text))


def redact(text: str) -> str:
    """Belt and braces: the code never logs credentials, and this removes any that slip in, however
    a URL spelled them: a token percent-encoded (in any case, in the path or the query, even encoded
    twice) is found in the decoded text and cut from the text as written."""
    text = _redact_plain(text)
    if "%" in text:
        decoded = text
        for _ in range(_DECODE_ROUNDS):
            decoded = unquote(decoded, encoding="latin-1")
        if "eyJ" in decoded or "earer" in decoded.lower():  # cheap test first; spans only when needed
            text = _redact_encoded(text)
    return text


def _decode_with_spans(text: str, spans: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with one round of %XX decoded, and for each decoded character the span of the
    original text it came from (``spans`` maps ``text`` to the original)."""
    out: list[str] = []
    mapped: list[tuple[int, int]] = []
    position = 0
    for match in _HEX.finditer(text):
        for index in range(position, match.start()):
            out.append(text[index])
            mapped.append(spans[index])
        out.append(chr(int(match.group()[1:], 16)))
        mapped.append((spans[match.start()][0], spans[match.end() - 1][1]))
        position = match.end()
    for index in range(position, len(text)):
        out.append(text[index])
        mapped.append(spans[index])
    return "".join(out), mapped


def _redact_encoded(text: str) -> str:
    decoded, spans = text, [(index, index + 1) for index in range(len(text))]
    for _ in range(_DECODE_ROUNDS):
        decoded, spans = _decode_with_spans(decoded, spans)
    cuts = [(match.start(), match.end()) for match in _JWT.finditer(decoded)]
    cuts += [(match.start(2), match.end(2)) for match in _BEARER.finditer(decoded)]
    pieces, position = [], 0
    for start, end in sorted((spans[start][0], spans[end - 1][1]) for start, end in cuts):
        if start < position:  # overlaps the cut before it (a bearer token that is a JWT): one cut
            position = max(position, end)
            continue
        pieces += [text[position:start], "[token]"]
        position = end
    return "".join(pieces) + text[position:]


def text_line(when: str, level: str, logger: str, request_id: str, message: str) -> str:
    """A line of the development log: ``time LEVEL logger [request id] message``. The one place the
    format is written: the formatter below and the access log (``service.accesslog``) both use it."""
    return f"{when} {level} {logger} [{request_id}] {message}"


def json_line(when: str, level: str, logger: str, request_id: str, message: str, **extra: Any) -> str:
    """A line of the production log: one JSON object with these fields (and ``extra``)."""
    return orjson.dumps(
        {"time": when, "level": level, "logger": logger, "message": message, "request_id": request_id, **extra}
    ).decode()


def json_time(created: float) -> str:
    """UTC, RFC 3339 with milliseconds: ``2026-12-06T20:14:21.593Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {"exception": redact(self.formatException(record.exc_info))} if record.exc_info else {}
        rid = getattr(record, "request_id", "-")
        when = json_time(record.created)
        return json_line(when, record.levelname, record.name, rid, redact(record.getMessage()), **extra)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", "-")
        line = text_line(self.formatTime(record), record.levelname, record.name, rid, record.getMessage())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


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
