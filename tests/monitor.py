"""Count the commands clients send to a Redis (MONITOR), leaving out those run inside Lua scripts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis


class Commands:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def names(self) -> list[str]:
        return [command.split(" ", 1)[0].upper() for command in self.sent]


@contextlib.asynccontextmanager
async def client_commands(url: str) -> AsyncIterator[Commands]:
    """Everything sent by clients (not by scripts) while the block runs."""
    seen = Commands()
    monitor_client = Redis.from_url(url)
    async with monitor_client.monitor() as monitor:

        async def collect() -> None:
            while True:
                info = await monitor.next_command()
                if info["client_type"] != "lua" and not info["command"].upper().startswith("PING"):
                    seen.sent.append(info["command"])

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.05)
        try:
            yield seen
        finally:
            await asyncio.sleep(0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await monitor_client.aclose()
