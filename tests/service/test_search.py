"""The word index in front of the substring search (``service/search.py``, ``ListingStore.search``), on
SQLite and on a real PostgreSQL: every query finds exactly the listings that hold it as a substring of
their title or description, newest first, whatever the index narrowed (checked against Python's ``in``
over random listings, edits and deletes, and queries made to trip it up), and a database from before
the word index is upgraded in place."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from databases import Database

from service import db, search
from service.schemas import ListingCreate, ListingUpdate
from service.store import ListingQuery, ListingStore
from tests.conftest import postgres_database

pytestmark = pytest.mark.anyio

#: Words that share their beginnings, ends and middles, Turkish letters, punctuation and LIKE syntax.
WORDS = ["daire", "ev", "evi", "yeni", "bahçe", "Şişli", "şiş", "deniz", "denizli", "ada", "adana", "nadir",
         "3+1", "a.b", "%_", "ı", "İ", "ab", "ba", "aba", "x" * 70, "x" * 71 + "y"]  # fmt: skip
CITIES = ["İstanbul", "Ankara", "Izmir"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    # Bands of 4 ids (before the migration bakes the size into PostgreSQL's trigger): a hundred
    # listings are walked band by band, then below the bands, as a million are.
    monkeypatch.setattr(search, "ID_BAND", 4)
    if request.param == "sqlite":
        connected = await db.connect(f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}")
        yield connected
        await db.disconnect(connected)
    else:
        async with postgres_database() as url:
            connected = await db.connect(url)
            yield connected
            await db.disconnect(connected)


def text(rnd: random.Random, most: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, most)))


async def everything(store: ListingStore, **params: Any) -> list[int]:
    """Every page of a search, small pages so the cursor is used, as ids."""
    ids: list[int] = []
    cursor = None
    while True:
        items, cursor = await store.search(ListingQuery.model_validate({**params, "limit": 7, "cursor": cursor}))
        ids += [item["id"] for item in items]
        if cursor is None:
            return ids


async def test_every_query_finds_exactly_the_listings_that_hold_it(database: Database) -> None:
    store = ListingStore(database)
    rnd = random.Random(25)
    listings: dict[int, dict[str, Any]] = {}
    for i in range(120):
        title = text(rnd, 5) or "ilan"
        fields = {"title": title, "description": text(rnd, 8), "price": Decimal(i % 10 + 1), "city": rnd.choice(CITIES)}
        listing = await store.create(ListingCreate.model_validate(fields), owner_id="u")
        listings[listing["id"]] = listing
    for listing_id in rnd.sample(sorted(listings), 30):  # edits move words, cities and prices in the indexes
        changes = [{"title": text(rnd, 4) or "ilan"}, {"description": text(rnd, 6)},
                   {"price": str(rnd.randint(1, 10)), "city": rnd.choice(CITIES)}][listing_id % 3]  # fmt: skip
        listings[listing_id] = await store.update(listing_id, ListingUpdate.model_validate(changes))  # type: ignore[assignment]
    for listing_id in rnd.sample(sorted(listings), 10):
        assert await store.delete(listing_id)
        del listings[listing_id]

    documents = {i: search.document(item["title"], item["description"]) for i, item in listings.items()}
    queries = {"daire ev", "ire ev", "e e", "ev evi", "a a a", "ev ev ev", "eni bah", "a.b %_", "%", "_", "+1 da",
               "ş", "is", "I", "iş", "xx", "x" * 66, "x" * 70 + " ", "nadir zzz", "zq", "zqx", "deniz adana nadir",
               "DENİZLİ", "sisli siş", " ab ", "b a", "ab ba aba"}  # fmt: skip
    for doc in rnd.sample(sorted(documents.values()), 30):  # pieces of real listings, across their words
        field = rnd.choice(doc.split(search.FIELD_SEPARATOR)) or "ev"
        start = rnd.randrange(len(field))
        queries.add(field[start : start + rnd.randint(1, 25)])
    queries.update(f"{rnd.choice(WORDS)} {rnd.choice(WORDS)}" for _ in range(30))  # words that may never be adjacent
    for q in sorted(queries):
        folded = search.fold(q)
        if not folded:
            continue
        holding = sorted((i for i, doc in documents.items() if folded in doc), reverse=True)
        assert await everything(store, q=q) == holding, q
        in_ankara = [i for i in holding if listings[i]["city"] == "Ankara"]
        assert await everything(store, q=q, city="ankara") == in_ankara, q
        cheap = [i for i in holding if Decimal(listings[i]["price"]) <= 3]
        assert await everything(store, q=q, max_price="3") == cheap, q
        middle = [i for i in holding if 4 <= Decimal(listings[i]["price"]) <= 6 and listings[i]["city"] == "Izmir"]
        assert await everything(store, q=q, min_price="4", max_price="6", city="IZMIR") == middle, q


async def test_a_word_in_no_listing_is_answered_from_the_vocabulary(database: Database) -> None:
    store = ListingStore(database)
    await store.create(ListingCreate(title="Deniz manzaralı daire", price=Decimal(1), city="İzmir"), owner_id="u")
    assert await store._narrowing("yok") is None  # no word holds it: no listing is read
    assert await store._narrowing("manzarali daire") == [["manzarali daire"]]
    assert await store._narrowing("daire deniz") == [["daire deniz"]]  # both words exist, not in this order
    assert (await store.search(ListingQuery.model_validate({"q": "daire deniz"})))[0] == []
    assert await store._narrowing("iz manz") == [["deniz manzarali"]]
    listing = (await store.search(ListingQuery.model_validate({"q": "NIZ MANZ"})))[0]
    assert [item["title"] for item in listing] == ["Deniz manzaralı daire"]


async def test_a_database_from_before_the_word_index_is_upgraded(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 4 of the schema with listings in it (written as that version wrote them), then the
    migrations run again: the words of every listing are indexed and found."""
    await database.execute("DROP TABLE schema_migrations")
    for table in ("listings", "listings_fts", "listings_short", "listings_words", "search_words", "search_words_fts"):
        await database.execute(f"DROP TABLE IF EXISTS {table}")
    monkeypatch.setattr(db, "MIGRATIONS", tuple(m for m in db.MIGRATIONS if m.version <= 4))
    assert await db.migrate(database) == [1, 2, 3, 4]
    postgres = db.dialect(database) == "postgresql"
    for title, description in [("Satılık daire", "Deniz manzaralı, bahçeli"), ("Ev", "Yeni boyalı")]:
        doc = search.document(title, description)
        extra = {"short_terms": search.short_terms(doc)} if postgres else {}
        listing_id = await database.fetch_val(
            "INSERT INTO listings (title, description, price_minor, currency, city, owner_id, created_at, updated_at, "
            f"search, city_key{', short_terms' if postgres else ''}) VALUES (:title, :description, 100, 'TRY', "
            f"'Ankara', 'u', 't', 't', :search, 'ankara'{', :short_terms' if postgres else ''}) RETURNING id",
            {"title": title, "description": description, "search": doc, **extra},
        )
        if not postgres:
            await database.execute(
                "INSERT INTO listings_short (rowid, terms) VALUES (:id, :terms)",
                {"id": listing_id, "terms": " ".join(search.short_terms(doc))},
            )
    monkeypatch.undo()

    assert await db.migrate(database) == [5, 6]
    store = ListingStore(database)
    assert [
        item["title"] for item in (await store.search(ListingQuery.model_validate({"q": "manzarali, bahc"})))[0]
    ] == ["Satılık daire"]
    assert await store._narrowing("yeni boyali") == [["yeni boyali"]]
    vocabulary = {row[0] for row in await database.fetch_all("SELECT word FROM search_words")}
    assert vocabulary == {"satilik", "daire", "deniz", "manzarali,", "bahceli", "ev", "yeni", "boyali"}


async def test_a_word_repeated_many_times_is_narrowed_by_its_run(database: Database) -> None:
    """A query repeating a word k times needs a listing repeating it k times (runs up to 8 are
    terms): found exactly as the substring says, for runs shorter, equal and longer than 8."""
    store = ListingStore(database)
    documents = {}
    for length in (1, 2, 3, 4, 5, 7, 8, 9, 12):
        title, description = f"Ev {length}", "sahibinden " + " ".join(["ev"] * length) + " satilik"
        listing = await store.create(ListingCreate(title=title, description=description, price=Decimal(1),
                                                   city="Ankara"), owner_id="u")  # fmt: skip
        documents[listing["id"]] = search.document(title, description)
    queries = [" ".join(["ev"] * k) for k in range(1, 15)]
    queries += [f"n {q} s" for q in queries] + [f"{q} sat" for q in queries] + [f"den {q}" for q in queries]
    for q in queries:
        holding = sorted((i for i, doc in documents.items() if q in doc), reverse=True)
        assert await everything(store, q=q) == holding, q
    # Ten repeats between other words: only a listing with a run of 8 or more can hold them.
    assert [search.term(" ".join(["ev"] * 8))] in (await store._narrowing("n " + "ev " * 10 + "s") or [])


async def test_a_database_at_schema_5_is_upgraded_to_word_runs(database: Database) -> None:
    """Schema 5 indexed a word written 3 times in a row at most; migration 6 indexes the rows that
    repeat one more often again, and they are found, edited and deleted as any other."""
    store = ListingStore(database)
    created = []
    for title, description in [("Uzun", "ev ev ev ev ev ev satilik"), ("Kisa", "ev ev ev satilik")]:
        fields = ListingCreate(title=title, description=description, price=Decimal(1), city="Ankara")
        created.append(await store.create(fields, owner_id="u"))
    long, short = created
    # Back to schema 5: the long run's row indexed as schema 5 did (runs of 3 at most).
    doc = search.document("Uzun", "ev ev ev ev ev ev satilik")
    if db.dialect(database) == "postgresql":
        words = [t for t in search.postgres_arrays(doc, "ankara", 100)["words"] if not db._long_run_term(t)]
        await database.execute("UPDATE listings SET words = :words WHERE id = :id", {"id": long["id"], "words": words})
    else:
        now = search.sqlite_terms(doc, "ankara", 100)["listings_words"]
        before = search.sqlite_terms(doc, "ankara", 100, longest_run=3)["listings_words"]
        await database.execute(
            "INSERT INTO listings_words (listings_words, rowid, terms) VALUES ('delete', :id, :terms)",
            {"id": long["id"], "terms": now},
        )
        await database.execute(
            "INSERT INTO listings_words (rowid, terms) VALUES (:id, :terms)", {"id": long["id"], "terms": before}
        )
    await database.execute("DELETE FROM schema_migrations WHERE version = 6")
    six = "ev ev ev ev ev ev"  # four whole words between the ends: a run of 4 is asked of the index
    assert await everything(store, q=six) == []  # schema 5's index lacks it: migration 6 is needed
    assert await db.migrate(database) == [6]
    assert await everything(store, q=six) == [long["id"]]
    assert await everything(store, q="ev ev ev") == [short["id"], long["id"]]
    await store.update(long["id"], ListingUpdate(description="ev ev ev ev ev ev ev ev ev kiralik"))
    assert await everything(store, q="ev ev ev ev ev ev ev ev ev kir") == [long["id"]]
    assert await store.delete(long["id"])
    assert await everything(store, q="ev ev ev") == [short["id"]]


def test_price_bands_cover_every_price_of_the_range() -> None:
    """A range's bands (at most ``MAX_PRICE_BANDS``, of one size) hold every price in it: the index
    never drops a listing the exact price check would keep."""
    rnd = random.Random(8)
    for _ in range(5000):
        low = rnd.randint(0, 10**10)
        high = low + rnd.choice([0, 1, 99, 10**4, 10**6, 10**9])
        bands = search.price_bands(low, high)
        if bands is None:
            continue
        assert 0 < len(bands) <= search.MAX_PRICE_BANDS
        for price in (low, high, rnd.randint(low, high)):
            assert set(search.price_terms(price)) & set(bands), (low, high, price)
    assert search.price_bands(152_280_800, 153_280_800) == [" price:9:15"]
    assert search.price_bands(5, 4) == [] and search.price_bands(None, None) is None
