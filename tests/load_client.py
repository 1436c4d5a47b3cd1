"""A load-client process for tests: ``python -m tests.load_client '<json options>'`` prints the statuses."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main(options: dict[str, object]) -> list[int]:
    urls = list(options["urls"])  # type: ignore[call-overload]
    concurrency = int(options["concurrency"])  # type: ignore[call-overload]
    headers = {"Authorization": f"Bearer {options['token']}"} if options.get("token") else {}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        # Open connections first, so the timed burst is only the requests under test.
        await asyncio.sleep(max(0.0, float(options["start_at"]) - time.time()))  # type: ignore[arg-type]
        responses = await asyncio.gather(
            *(client.get(f"{urls[i % len(urls)]}{options['path']}") for i in range(concurrency))
        )
    return [response.status_code for response in responses]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
