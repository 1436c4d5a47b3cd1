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
        db.discard(again)  # a statement on it was given up on: closed when released, not kept
        await pool.release(again)
        third = await pool.acquire()
        assert third is not again
        await pool.release(third)
        # and the database still takes writes: the abandoned transaction's lock went with its connection
        await database.execute("CREATE TABLE t (x INTEGER)")
        await asyncio.gather(*(database.execute("INSERT INTO t VALUES (:x)", {"x": i}) for i in range(50)))
        assert await database.fetch_val("SELECT count(*) FROM t") == 50
    finally:
        await db.disconnect(database)


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_behind(tmp_path: Path) -> None:
    """A client gives up while its write waits for SQLite's lock: the ``BEGIN`` still runs later on
    that connection, so the connection must not be handed to the next request (whose writes would
    then sit in a transaction nobody commits)."""
    from service.schemas import ListingCreate
    from service.store import ListingStore

    path = tmp_path / "cancel.db"
    database = await db.connect(f"sqlite+aiosqlite:///{path}")
    store = ListingStore(database)
    listing = ListingCreate(title="Daire", price="1", city="Ankara")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(store.create(listing, owner_id="1"))
        await asyncio.sleep(0.3)  # waiting for the lock
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        holder.execute("ROLLBACK")  # the cancelled BEGIN IMMEDIATE may now take the lock
        await asyncio.sleep(0.3)
        for _ in range(3):
            await store.create(listing, owner_id="1")
        assert holder.execute("SELECT count(*) FROM listings").fetchone()[0] == 3  # committed, seen outside
        holder.execute("BEGIN IMMEDIATE")  # and nobody is left holding the write lock
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        await db.disconnect(database)
