"""The database layer on SQLite: connections kept between queries (never one left inside a
transaction), and the write lock held by someone else past the busy timeout (a 503, never a 500)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from service import db

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


async def test_connections_are_kept_between_queries_but_never_inside_a_transaction(tmp_path: Path) -> None:
    database = await db.connect(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}")
    try:
        pool = database._backend._pool
        assert isinstance(pool, db.SQLitePool)
        first = await pool.acquire()
        await pool.release(first)
        assert await pool.acquire() is first  # kept, handed out again
        await first.execute("BEGIN IMMEDIATE")  # released inside a transaction (an interrupted write)
        await pool.release(first)
        again = await pool.acquire()
        assert again is not first and not again.in_transaction
        await pool.release(again)
        # and the database still takes writes: the abandoned transaction's lock went with its connection
        await database.execute("CREATE TABLE t (x INTEGER)")
        await asyncio.gather(*(database.execute("INSERT INTO t VALUES (:x)", {"x": i}) for i in range(50)))
        assert await database.fetch_val("SELECT count(*) FROM t") == 50
    finally:
        await db.disconnect(database)
