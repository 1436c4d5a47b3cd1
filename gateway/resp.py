"""A small RESP3 reader and writer for the near cache's invalidation channel (``gateway.nearcache``),
which reads its socket without blocking, in the request's own turn of the event loop."""

from __future__ import annotations

from typing import Any


class Incomplete(Exception):
    """The buffer ends inside a frame: read more."""


class Push(list[Any]):
    """A RESP3 push frame (``>``): out-of-band data such as ``["invalidate", [keys]]``."""


def encode(*parts: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse(buffer: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One frame from ``buffer`` at ``pos``: ``(value, next position)``; ``Incomplete`` if it is not
    all there yet. Errors come back as ``ResponseError`` values, not raised."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line, pos = buffer[pos : pos + 1], bytes(buffer[pos + 1 : end]), end + 2
    if kind in (b"+", b"("):
        return (line if kind == b"+" else int(line)), pos
    if kind == b":":
        return int(line), pos
    if kind in (b"-", b"!"):
        if kind == b"!":
            line, pos = _blob(buffer, pos, int(line))
        return ResponseError(line.decode("utf-8", "replace")), pos
    if kind in (b"$", b"="):
        if line == b"-1":
            return None, pos
        return _blob(buffer, pos, int(line))
    if kind == b"_":
        return None, pos
    if kind == b"#":
        return line == b"t", pos
    if kind == b",":
        return float(line), pos
    if kind in (b"*", b">", b"~", b"%", b"|"):
        count = int(line)
        if count < 0:
            return None, pos
        if kind in (b"%", b"|"):
            count *= 2
        items = []
        for _ in range(count):
            item, pos = parse(buffer, pos)
            items.append(item)
        if kind == b"|":  # attributes precede the reply they describe
            return parse(buffer, pos)
        if kind == b"%":
            return dict(zip(items[::2], items[1::2], strict=True)), pos
        return (Push(items) if kind == b">" else items), pos
    raise ValueError(f"not RESP: {bytes(buffer[pos - len(line) - 3 : pos])!r}")


def _blob(buffer: bytes | bytearray, pos: int, length: int) -> tuple[bytes, int]:
    if len(buffer) < pos + length + 2:
        raise Incomplete
    return bytes(buffer[pos : pos + length]), pos + length + 2


class ResponseError(Exception):
    """A Redis error reply."""
