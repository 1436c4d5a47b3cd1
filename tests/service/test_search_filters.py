"""Pages of listings filtered by city and price, with and without text, whichever index leads
(``ListingStore.search``): the ids of a range from its index alone, the listings walked newest first, the
filters' index leading a text query or the text index leading it. Every path gives exactly the listings
that pass, newest first, page after page, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from databases import Database

from service import db, search, store
from service.schemas import ListingCreate
from service.store import ListingQuery, ListingStore
from tests.conftest import postgres_database

pytestmark = pytest.mark.anyio

WORDS = ["daire", "ev", "bahçe", "deniz", "Şişli", "nadir"]
CITIES = ["İstanbul", "Ankara", "Izmir"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        connected = await db.connect(f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}")
        yield connected
        await db.disconnect(connected)
    else:
        async with postgres_database() as url:
            connected = await db.connect(url)
            yield connected
            await db.disconnect(connected)


async def everything(listing_store: ListingStore, **params: Any) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        query = ListingQuery.model_validate({**params, "limit": 4, "cursor": cursor})
        items, cursor = await listing_store.search(query)
        ids += [item["id"] for item in items]
        if cursor is None:
            return ids


@pytest.mark.parametrize("cutoff", [1, 7, 10_000])
async def test_every_filter_path_finds_exactly_the_listings_that_pass(
    database: Database, monkeypatch: pytest.MonkeyPatch, cutoff: int
) -> None:
    """``cutoff`` moves the counts that choose a path (1: always past them, 10,000: never)."""
    monkeypatch.setattr(store, "IDS_FIRST", cutoff)
    monkeypatch.setattr(store, "LEAD_PROBE", cutoff)
    monkeypatch.setattr(store, "FREQUENT_TEXT", (cutoff, 200))
    listing_store = ListingStore(database)
    rnd = random.Random(cutoff)
    listings: dict[int, dict[str, Any]] = {}
    for _ in range(80):
        fields = {
            "title": " ".join(rnd.choices(WORDS, k=rnd.randint(1, 3))),
            "price": Decimal(rnd.choice([1, 5, 9, 10, 15, 99, 100, 250, 1000, 12345])),
            "city": rnd.choice(CITIES),
        }
        listing = await listing_store.create(ListingCreate.model_validate(fields), owner_id="u")
        listings[listing["id"]] = listing
    ranges = [(None, "9"), ("10", None), ("5", "15"), ("99", "99"), ("1", "12345"), ("16", "98"), ("300", "200")]
    for low, high in ranges:
        prices = {k: v for k, v in (("min_price", low), ("max_price", high)) if v is not None}
        for city in (None, "ankara"):
            for q in (None, "ev", "nadir", "a", "zz"):
                params: dict[str, Any] = {**prices, **({"city": city} if city else {}), **({"q": q} if q else {})}
                expected = sorted(
                    (
                        i
                        for i, item in listings.items()
                        if (low is None or Decimal(item["price"]) >= Decimal(low))
                        and (high is None or Decimal(item["price"]) <= Decimal(high))
                        and (city is None or item["city"] == "Ankara")
                        and (q is None or search.fold(q) in search.document(item["title"], item["description"]))
                    ),
                    reverse=True,
                )
                assert await everything(listing_store, **params) == expected, params
