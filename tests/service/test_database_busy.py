"""SQLite's write lock held by someone else past the busy timeout: a 503 to retry, never a 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_a_write_stuck_behind_a_held_lock_is_a_503_not_a_500(client: httpx.AsyncClient, tmp_path: Path) -> None:
    """Another process holds the write lock for longer than the 5 s busy timeout."""
    holder = sqlite3.connect(tmp_path / "kapi.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = await client.post("/listings", json={"title": "Daire", "price": "1", "city": "Ankara"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert "busy" in response.json()["detail"]
    assert (await client.post("/listings", json={"title": "Daire", "price": "1", "city": "Ankara"})).status_code == 201
