"""Lua scripts shipped as package data, read once and registered per client."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any


@cache
def lua_source(name: str) -> str:
    """The text of ``gateway/lua/<name>.lua``, with each ``--!include other`` line replaced by the
    text of ``other.lua`` (shared Lua functions, so composed scripts stay one round trip)."""
    text = files("gateway").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = [lua_source(line.split()[1]) if line.startswith("--!include ") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


class ScriptSet:
    """Registers named scripts on a client once; ``register_script`` costs no network call and
    falls back from EVALSHA to SCRIPT LOAD on NOSCRIPT (e.g. after a Redis restart)."""

    def __init__(self, *names: str) -> None:
        self._names = names
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def bind(self, client: Any) -> dict[str, Any]:
        if client is not self._client:
            self._scripts = {name: client.register_script(lua_source(name)) for name in self._names}
            self._client = client
        return self._scripts
