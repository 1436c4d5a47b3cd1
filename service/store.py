"""Listings in the database: the source of truth behind the cache, and the search query."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from databases import Database
from pydantic import BaseModel, ConfigDict, Field

from service import db, search
from service.schemas import TEXT_PATTERN, ListingCreate, ListingUpdate, Price

Listing = dict[str, Any]

_COLUMNS = "id, title, description, price_minor, currency, city, owner_id, created_at, updated_at"
_MAX_ID = 2**63 - 1


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _to_listing(row: Any) -> Listing:
    data = row._mapping
    return {
        "id": data["id"],
        "title": data["title"],
        "description": data["description"],
        "price": f"{Decimal(data['price_minor']) / 100:.2f}",
        "currency": data["currency"],
        "city": data["city"],
        "owner_id": data["owner_id"],
        "created_at": data["created_at"],
        "updated_at": data["updated_at"],
    }


def _minor(price: Decimal) -> int:
    return int(price * 100)


#: PostgreSQL: how many of the newest rows a text query reads before it asks the index: a term in a
#: few percent of the listings fills its page there, from pages in shared buffers (the newest id band
#: would be thousands of its candidates, each a heap page); a rarer one costs this many rows for nothing.
RECENT_WINDOW = 500
#: PostgreSQL: the index is walked newest first, a few id bands (``search.ID_BAND`` ids each) at a time,
#: so a term in thousands of rows costs the pages of the newest few dozen; past these bands, the
#: candidates left are few enough to read at once.
BAND_STEPS = (1, 2, 4, 8)
#: ...unless a requirement has more terms than this (a part many words contain): each is a posting list
#: read again at every step, so the index is then searched once.
BAND_WALK_TERMS = 64
#: SQLite, a query with filters: how many rows of the filters' index and of the text index are counted
#: to choose which one leads (``_filters_lead``).
LEAD_PROBE = 2000
#: A text held by at least this many of this many newest listings is frequent: filters that pass fewer
#: than ``LEAD_PROBE`` listings lead it (on SQLite without counting the text index's candidates).
FREQUENT_TEXT = (50, 200)
#: SQLite, a price range without text: when fewer listings than this pass the filters, the page's ids
#: are taken from their index alone (it holds the id) and sorted there, and only the page's rows are
#: read; past it, so many pass that walking the listings newest first reaches a page within a few
#: hundred rows (the rows of a range are scattered: reading them all to sort them took 440 ms cold
#: for 60% of a million listings).
IDS_FIRST = 30_000


class ListingStore:
    """Listings in the database: the source of truth behind the cache, and the search.

    Search columns are kept with the row in the same statement or transaction: ``search`` (title and
    description folded, ``service.search``) and ``city_key`` (the folded city). SQLite indexes
    ``search`` with FTS5's trigram tokenizer (``listings_fts``, kept by triggers), its 1-2
    character substrings in ``listings_short`` and its words and pairs of adjacent words in
    ``listings_words`` (both kept here, in the write's transaction); PostgreSQL with ``pg_trgm`` (GIN),
    a ``short_terms`` array and a ``words`` array (GIN). Every word written is added to the vocabulary
    (``search_words``), which a query of 3+ characters consults first (``search.WordQuery``)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.dialect = "postgresql" if database.url.dialect.startswith("postgres") else "sqlite"

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """A write transaction. On SQLite it takes the write lock when it begins (``BEGIN
        IMMEDIATE``), waiting its turn behind other writers for up to the busy timeout: a deferred
        transaction that writes through FTS5 triggers failed at once with "database is locked" under
        concurrent creates (measured: 177 of 200 concurrent ``POST /listings`` refused)."""
        if self.dialect != "sqlite":
            async with self.database.transaction():
                yield
            return
        async with self.database.connection() as connection:

            async def run(sql: str) -> None:
                try:
                    await connection.execute(sql)
                except BaseException:
                    # Given up (cancelled, timed out, failed): the statement may still run on this
                    # connection's thread, so the connection must not serve another request.
                    db.discard(connection.raw_connection)
                    raise

            await run("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await run("ROLLBACK")
                raise
            await run("COMMIT")

    async def get(self, listing_id: int) -> Listing | None:
        row = await self.database.fetch_one(f"SELECT {_COLUMNS} FROM listings WHERE id = :id", {"id": listing_id})
        return None if row is None else _to_listing(row)

    def _search_values(self, title: str, description: str, city: str, price_minor: int) -> dict[str, Any]:
        doc = search.document(title, description)
        values: dict[str, Any] = {"search": doc, "city_key": search.fold(city)}
        if self.dialect == "postgresql":
            values.update(search.postgres_arrays(doc, values["city_key"], price_minor))
        return values

    async def create(self, data: ListingCreate, owner_id: str) -> Listing:
        stamp = now_rfc3339()
        values = {
            "title": data.title,
            "description": data.description,
            "price_minor": _minor(data.price),
            "currency": data.currency,
            "city": data.city,
            "owner_id": owner_id,
            "created_at": stamp,
            "updated_at": stamp,
            **self._search_values(data.title, data.description, data.city, _minor(data.price)),
        }
        columns = ", ".join(values)
        async with self._writing():
            row = await self.database.fetch_one(
                f"INSERT INTO listings ({columns}) VALUES ({', '.join(':' + name for name in values)}) "
                f"RETURNING {_COLUMNS}",
                values,
            )
            assert row is not None  # INSERT ... RETURNING always returns the row
            if self.dialect == "sqlite":
                await self._index(row._mapping["id"], values["search"], values["city_key"], values["price_minor"])
            await db.remember_words(self.database, search.words(values["search"]))
        return _to_listing(row)

    async def update(self, listing_id: int, changes: ListingUpdate) -> Listing | None:
        """Apply the fields given. The transaction's first statement is the write, so concurrent
        writers queue on the database's lock instead of failing to upgrade a read lock (SQLite's
        "database is locked"); the search columns are then derived from the row as written."""
        fields = changes.model_dump(exclude_unset=True)
        values = {
            "id": listing_id,
            "title": fields.get("title"),
            "description": fields.get("description"),
            "price_minor": _minor(fields["price"]) if fields.get("price") is not None else None,
            "currency": fields.get("currency"),
            "city": fields.get("city"),
            "updated_at": now_rfc3339(),
        }
        async with self._writing():
            before = None
            if self.dialect == "sqlite":  # what the contentless indexes were given (the write lock is held)
                before = await self.database.fetch_one(
                    "SELECT search, city_key, price_minor FROM listings WHERE id = :id", {"id": listing_id}
                )
            row = await self.database.fetch_one(
                "UPDATE listings SET title = COALESCE(:title, title), "
                "description = COALESCE(:description, description), "
                "price_minor = COALESCE(:price_minor, price_minor), currency = COALESCE(:currency, currency), "
                "city = COALESCE(:city, city), updated_at = :updated_at "
                f"WHERE id = :id RETURNING {_COLUMNS}, search",
                values,
            )
            if row is None:
                return None
            listing = _to_listing(row)
            price_minor = row._mapping["price_minor"]
            derived = self._search_values(listing["title"], listing["description"], listing["city"], price_minor)
            assignments = ", ".join(f"{name} = :{name}" for name in derived)
            await self.database.execute(
                f"UPDATE listings SET {assignments} WHERE id = :id", {"id": listing_id, **derived}
            )
            if before is not None:
                old, new = (before[0], before[1], before[2]), (derived["search"], derived["city_key"], price_minor)
                if search.sqlite_terms(*old) != search.sqlite_terms(*new):
                    await self._unindex(listing_id, *old)
                    await self._index(listing_id, *new)
            if derived["search"] != row._mapping["search"]:
                await db.remember_words(self.database, search.words(derived["search"]))
        return listing

    async def delete(self, listing_id: int) -> bool:
        async with self._writing():
            row = await self.database.fetch_one(
                "DELETE FROM listings WHERE id = :id RETURNING id, search, city_key, price_minor", {"id": listing_id}
            )
            if row is not None and self.dialect == "sqlite":
                await self._unindex(listing_id, row[1], row[2], row[3])
        return row is not None

    async def _index(self, listing_id: int, doc: str, city_key: str, price_minor: int) -> None:
        for table, terms in search.sqlite_terms(doc, city_key, price_minor).items():
            await self.database.execute(
                f"INSERT INTO {table} (rowid, terms) VALUES (:id, :terms)", {"id": listing_id, "terms": terms}
            )

    async def _unindex(self, listing_id: int, doc: str, city_key: str, price_minor: int) -> None:
        # A contentless FTS5 table forgets a row when told the exact terms it was given.
        for table, terms in search.sqlite_terms(doc, city_key, price_minor).items():
            await self.database.execute(
                f"INSERT INTO {table} ({table}, rowid, terms) VALUES ('delete', :id, :terms)",
                {"id": listing_id, "terms": terms},
            )

    async def search(self, query: ListingQuery) -> tuple[list[Listing], str | None]:
        """Newest first, ``limit`` per page, filtered by everything given; every shape uses an index."""
        folded = search.fold(query.q) if query.q else ""
        filters: list[str] = []
        values: dict[str, Any] = {"limit": query.limit + 1}
        if query.city is not None:
            filters.append("l.city_key = :city")
            values["city"] = search.fold(query.city)
        if query.min_price is not None:
            filters.append("l.price_minor >= :min_price")
            values["min_price"] = _minor(query.min_price)
        if query.max_price is not None:
            filters.append("l.price_minor <= :max_price")
            values["max_price"] = _minor(query.max_price)
        if query.after_id is not None:
            filters.append("l.id < :after_id")
            values["after_id"] = query.after_id
        columns = ", ".join(f"l.{name.strip()}" for name in _COLUMNS.split(","))
        if not folded and self.dialect == "postgresql" and any(not f.startswith("l.id <") for f in filters):
            # The page's ids from an index alone ((city_key, id) INCLUDE (price_minor), or (price_minor)
            # INCLUDE (id), sorted there), or the primary key for a range most listings are in; then its rows.
            ids = f"SELECT l.id FROM listings l {self._where(filters)} ORDER BY l.id DESC LIMIT :limit"
            rows = await self._fetch(f"SELECT {columns} FROM listings l WHERE l.id IN ({ids})", [], values)
        elif not folded and self.dialect == "sqlite" and any(f.startswith("l.price_minor") for f in filters):
            rows = await self._price_range_sqlite(filters, values, columns)
        elif not folded:
            rows = await self._fetch(f"SELECT {columns} FROM listings l", filters, values)
        elif self.dialect == "sqlite":
            rows = await self._search_sqlite(folded, filters, values, columns)
        else:
            rows = await self._search_postgres(folded, query, filters, values, columns)
        items = [_to_listing(row) for row in rows[: query.limit]]
        next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > query.limit else None
        return items, next_cursor

    async def _narrowing(self, folded: str) -> list[list[str]] | None:
        """The word-index requirements of a query of 3+ characters (``search.WordQuery.narrowing``),
        from one vocabulary lookup: ``None`` when no listing can match."""
        query = search.WordQuery(folded)
        lookups = {"infix": query.infix} if query.infix is not None else {"suffix": query.first, "prefix": query.last}
        found: dict[str, list[str]] = {kind: [] for kind in lookups}
        for row in await self._vocabulary(lookups):
            found[row[0]].append(row[1])
        sides = [None if len(found[kind]) > search.MAX_WORDS else found[kind] for kind in lookups]
        return query.narrowing(*sides)

    async def _vocabulary(self, lookups: dict[str, str]) -> list[Any]:
        """``(kind, word)`` rows, in one statement: up to ``MAX_WORDS + 1`` vocabulary words for each
        lookup, ``infix`` (words containing the text), ``prefix`` (starting with it) or ``suffix``."""
        values: dict[str, Any] = {"cap": search.MAX_WORDS + 1}
        selects = []
        for kind, text in lookups.items():
            values[kind] = text
            selects.append(f"SELECT * FROM (SELECT '{kind}' AS kind, word FROM {self._words_where(kind, text, values)} "
                           f"LIMIT :cap) AS {kind}")  # fmt: skip
        sql = " UNION ALL ".join(selects)
        return list(await self.database.fetch_all(sql, {k: v for k, v in values.items() if f":{k}" in sql}))

    def _words_where(self, kind: str, text: str, values: dict[str, Any]) -> str:
        """The vocabulary rows of one lookup: an index search (a trigram one for ``infix``, a range of
        the word or of the word reversed for the others), then the exact check."""
        if kind == "infix" and self.dialect == "sqlite":
            values["phrase"] = search.fts_phrase(text)
            return "search_words_fts WHERE search_words_fts MATCH :phrase AND instr(word, :infix) > 0"
        if kind == "infix":
            values["pattern"] = search.like_pattern(text)
            return "search_words WHERE word LIKE :pattern ESCAPE '\\'"
        key, column = (text, "word") if kind == "prefix" else (text[::-1], "reversed")
        check = f"substr(word, {'1' if kind == 'prefix' else '-length(:suffix)'}, length(:{kind})) = :{kind}"
        if self.dialect == "postgresql":  # the indexed expressions of migration 5
            column = 'left(word, 200) COLLATE "C"' if kind == "prefix" else 'left(reverse(word), 200) COLLATE "C"'
            key = key[:200]
            check = f"{'left' if kind == 'prefix' else 'right'}(word, length(:{kind})) = :{kind}"
        low, high = search.prefix_range(key)
        values[f"{kind}_low"] = low
        where = [f"{column} >= :{kind}_low", check]
        if high is not None:
            values[f"{kind}_high"] = high
            where.insert(1, f"{column} < :{kind}_high")
        return f"search_words WHERE {' AND '.join(where)}"

    @staticmethod
    def _filters_index(values: dict[str, Any]) -> str:
        """SQLite: the index of the filters given, which holds each listing's id (named, so that a cursor's
        ``id <`` never makes the planner walk the primary key and read every row to check the rest)."""
        if "city" not in values:
            return "listings_price"
        return "listings_city_price" if "min_price" in values or "max_price" in values else "listings_city_id"

    async def _price_range_sqlite(self, filters: list[str], values: dict[str, Any], columns: str) -> list[Any]:
        """A page of a price range (and maybe a city), no text (SQLite): the listings that pass are counted
        up to ``IDS_FIRST`` from the price's index alone; fewer, and the page's ids come from that index,
        sorted there, then just the page's rows are read; more, and the listings are walked newest first
        (by the city's index or the primary key), the price checked on each row read."""
        index = f"listings l INDEXED BY {self._filters_index(values)}"
        # Counted without the cursor: the index is read over the price range whatever the ids, so a deep
        # cursor would make the count read all of it.
        unbounded = [f for f in filters if not f.startswith("l.id <")]
        counted = f"SELECT count(*) FROM (SELECT 1 FROM {index} {self._where(unbounded)} LIMIT :probe)"
        used = {name: value for name, value in values.items() if f":{name}" in counted}
        passing = await self.database.fetch_one(counted, used | {"probe": IDS_FIRST})
        assert passing is not None
        if passing[0] < IDS_FIRST:
            ids = f"SELECT l.id FROM {index} {self._where(filters)} ORDER BY l.id DESC LIMIT :limit"
            return await self._fetch(f"SELECT {columns} FROM listings l", [f"l.id IN ({ids})"], values)
        # ``+`` keeps the price's index out of the plan (SQLite's planner cannot tell a range's size).
        walk = [f.replace("l.price_minor", "+l.price_minor") for f in filters]
        return await self._fetch(f"SELECT {columns} FROM listings l", walk, values)

    async def _search_sqlite(self, folded: str, filters: list[str], values: dict[str, Any], columns: str) -> list[Any]:
        """Through one FTS5 index newest first, meeting the text and the city and price band asked (the
        words; the 1-2 character index for a short query; the trigrams, the text alone, when no word
        narrows it), or, when the filters are the narrower, through their index; every row is checked
        for the substring and the filters."""
        listing: list[list[str]] = [[search.city_term(values["city"])]] if "city" in values else []
        bands = search.price_bands(values.get("min_price"), values.get("max_price"))
        if bands == []:  # min_price above max_price
            return []
        listing += [bands] if bands is not None else []
        if len(folded) < search.TRIGRAM:
            table = "listings_short"
            match = " AND ".join(
                [search.fts_phrase(search.short_term(folded)), *([search.fts_requirements(listing)] if listing else [])]
            )
        else:
            groups = await self._narrowing(folded)
            if groups is None:
                return []
            if groups:
                table, match = "listings_words", search.fts_requirements(groups + listing)
            else:  # the trigram index holds the text alone
                table, match = "listings_fts", search.fts_phrase(folded)
        values["q"], values["match"] = folded, match
        check = "instr(l.search, :q) > 0"
        passing, priced = None, False
        if any(not f.startswith("l.id <") for f in filters):
            # The listings in a price range are counted far enough to tell whether its ids can be held
            # in memory; a range too wide for price bands is most listings, and is not.
            priced = bands is not None and any(f.startswith("l.price_minor") for f in filters)
            lead, passing = await self._filters_lead(table, filters, values, IDS_FIRST if priced else LEAD_PROBE)
            if lead:
                # The ids that pass the filters from their index alone (it holds the id); rows are read
                # newest first, only until a page of them holds the text (reading every row that passes,
                # to sort them, was a cold read of up to ``LEAD_PROBE`` scattered rows).
                ids = f"SELECT l.id FROM listings l INDEXED BY {self._filters_index(values)} {self._where(filters)}"
                return await self._fetch(f"SELECT {columns} FROM listings l", [f"l.id IN ({ids})", check], values)
        # The cursor is a rowid bound on the index itself, so FTS5 starts the scan there.
        on_index = [f.replace("l.id <", "f.rowid <") for f in filters]
        if passing is not None and passing < IDS_FIRST and priced:
            # The exact price checked against the ids in the range, taken once from the price's index (a
            # set in memory, ``+`` keeps it a check), so only the rows in it are read: a price band is
            # up to ten times the range (a frequent word and a 0.2% range: 210 rows, 55 ms cold).
            unbounded = [f for f in filters if not f.startswith("l.id <")]
            ids = f"SELECT l.id FROM listings l INDEXED BY {self._filters_index(values)} {self._where(unbounded)}"
            on_index.append(f"+f.rowid IN ({ids})")
        return await self._fetch(
            f"SELECT {columns} FROM {table} f JOIN listings l ON l.id = f.rowid",
            [f"{table} MATCH :match", *on_index, check],
            values,
            order="f.rowid",
        )

    async def _filters_lead(
        self, table: str, filters: list[str], values: dict[str, Any], probe: int
    ) -> tuple[bool, int]:
        """Whether the filters' index should lead (SQLite): when the filters pass fewer rows than the
        text index has candidates (those of the city and price band asked: each candidate still has
        its exact price checked), both counted up to ``LEAD_PROBE``. A price range a few listings
        fall in is then read whole; a frequent word is not walked for them. The filters are counted
        without the cursor (their index is read over the whole range whatever the ids: with a deep cursor
        the count would read all of it), so a cursor only ever favours the text index.

        The text index is counted only when it must be: counting it meets a frequent term with the
        filters' terms, most of its posting list read (a 2-character text in a city and a 1% price
        range: 20 ms warm). When the filters pass ``LEAD_PROBE`` or more, the text leads; when they pass
        fewer and the text, of 1 or 2 characters, is in at least ``FREQUENT_TEXT`` of the newest rows,
        the filters lead (a page is then found within a few dozen of their rows); a frequent word leads
        (the price of each candidate is checked against the range's ids in memory). Returns the choice
        and how many listings pass the filters, counted up to ``probe`` (at least ``LEAD_PROBE``)."""
        unbounded = [f for f in filters if not f.startswith("l.id <")]
        passing = f"SELECT 1 FROM listings l INDEXED BY {self._filters_index(values)} {self._where(unbounded)}"
        newest = f"SELECT search FROM listings ORDER BY id DESC LIMIT {FREQUENT_TEXT[1]}"
        sql = (
            f"SELECT (SELECT count(*) FROM ({passing} LIMIT :probe)), "
            f"(SELECT count(*) FROM ({newest}) AS newest WHERE instr(newest.search, :q) > 0)"
        )
        used = {name: value for name, value in values.items() if f":{name}" in sql}
        counts = await self.database.fetch_one(sql, used | {"probe": max(probe, LEAD_PROBE)})
        assert counts is not None
        if counts[0] >= LEAD_PROBE:
            return False, counts[0]
        if counts[1] >= FREQUENT_TEXT[0]:  # a frequent word leads, its rows' prices checked in memory
            return table == "listings_short", counts[0]
        cursor = [f.replace("l.id <", "f.rowid <") for f in filters if f.startswith("l.id <")]
        candidates = f"SELECT 1 FROM {table} f {self._where([f'{table} MATCH :match', *cursor])} LIMIT :probe"
        sql = f"SELECT count(*) FROM ({candidates})"
        used = {name: value for name, value in values.items() if f":{name}" in sql}
        count = await self.database.fetch_one(sql, used | {"probe": LEAD_PROBE})
        assert count is not None
        return bool(counts[0] < count[0]), counts[0]

    async def _search_postgres(
        self, folded: str, query: ListingQuery, filters: list[str], values: dict[str, Any], columns: str
    ) -> list[Any]:
        """The newest rows first (a frequent term fills its page there), then one GIN search meeting
        the text's terms (the words, or the 1-2 character terms), the city's and the price bands',
        walked newest first by id band; the trigram index when no word narrows the text."""
        values["q"] = folded
        check = "strpos(l.search, :q) > 0"  # never an index condition: the planner cannot choose pg_trgm for it
        column = "short_terms"
        groups: list[list[str]] | None = [[search.short_term(folded)]]
        if len(folded) >= search.TRIGRAM:
            column, groups = "words", await self._narrowing(folded)
            if groups is None:
                return []
        window = [clause for clause in filters if clause.startswith("l.id <")]
        filters = [clause for clause in filters if clause not in window]
        price_bands = search.price_bands(values.get("min_price"), values.get("max_price"))
        if price_bands == []:  # min_price above max_price
            return []
        limit = query.limit

        async def newest(size: int) -> list[Any]:
            recent = f"(SELECT * FROM listings l {self._where(window)} ORDER BY l.id DESC LIMIT {size})"
            return await self._fetch(f"SELECT {columns} FROM {recent} l", [check, *filters], values)

        rows = await newest(RECENT_WINDOW)
        if len(rows) > limit:
            return rows
        select = f"SELECT {columns} FROM listings l"
        # Past the newest rows every statement is ordered by ``id + 0``, which the primary key cannot
        # serve, so the planner takes the GIN index (with ``ORDER BY id`` it walked the whole primary
        # key for a term it could not estimate), and bounds ids as ``id + 0`` too (a generic plan
        # intersected a cursor with a primary-key range of most of the table: 74 ms).
        below = [clause.replace("l.id <", "l.id + 0 <") for clause in window]
        if not groups:  # no word narrows the text: the trigram index
            values["pattern"] = search.like_pattern(folded)
            clauses = ["l.search LIKE :pattern ESCAPE '\\'", check, *filters, *below]
            return await self._fetch(select, clauses, values, order="l.id + 0")
        if query.city is not None:
            groups.append([search.city_term(values["city"])])
        if price_bands is not None:
            groups.append(price_bands)
        values.update({f"terms{i}": group for i, group in enumerate(groups)})
        terms = [f"l.{column} && CAST(:terms{i} AS text[])" for i in range(len(groups))]
        values["below"] = _MAX_ID if query.after_id is None else query.after_id
        # One statement walks the index newest first: a branch per step of id bands, then one for the
        # ids below them; PostgreSQL runs a UNION ALL's branches in order and stops at the page's end.
        top = f"(SELECT (LEAST(max(id) + 1, :below) - 1) / {search.ID_BAND} FROM listings)"
        steps = BAND_STEPS if all(len(group) <= BAND_WALK_TERMS for group in groups) else ()
        few, frequent = await self._filters_pass(filters, values) if filters else (False, False)
        if few and frequent:
            # The filters lead: the ids that pass, from their index alone, newest first; rows are read
            # only until a page holds the text (a nested loop the LIMIT stops).
            ids = f"SELECT l.id FROM listings l {self._where([*filters, *below])} ORDER BY l.id DESC"
            sql = f"{select} JOIN ({ids}) AS ids ON l.id = ids.id WHERE {check} ORDER BY ids.id DESC LIMIT :limit"
            return list(await self.database.fetch_all(sql, {k: v for k, v in values.items() if f":{k}" in sql}))
        if few:
            steps = ()  # the filters' index meets the text's in one bitmap search: a walk would repeat it
        branches, walked = [], 0
        for size in steps:
            walk = f"generate_series({top} - {walked + size - 1}, {top} - {walked}) AS band"
            branches.append(
                [*terms, f"l.{column} && ARRAY(SELECT ' id:' || band FROM {walk})", check, *filters, *below]
            )
            walked += size
        branches.append([*terms, check, *filters, *below, f"l.id + 0 < ({top} - {walked - 1}) * {search.ID_BAND}"])
        selects = [f"({select} {self._where(clauses)} ORDER BY l.id + 0 DESC LIMIT :limit)" for clauses in branches]
        sql = f"SELECT * FROM ({' UNION ALL '.join(selects)}) AS walk LIMIT :limit"
        rows = await self.database.fetch_all(sql, {name: value for name, value in values.items() if f":{name}" in sql})
        return sorted(rows, key=lambda row: -row._mapping["id"])

    async def _filters_pass(self, filters: list[str], values: dict[str, Any]) -> tuple[bool, bool]:
        """PostgreSQL: whether fewer than ``LEAD_PROBE`` listings pass ``filters`` (city, price; counted
        from their index alone), and whether the text is frequent (in ``FREQUENT_TEXT`` of the newest
        listings). Few and frequent: the filters lead, a page is found within a few dozen of their rows.
        Few: the planner meets the text's GIN search with the filters' index in one bitmap, and reads
        only the rows in both; walking id bands would search both again per band (a frequent
        2-character text in a city and a 1% price range: 589 index pages, 190 ms cold)."""
        hits, newest = FREQUENT_TEXT
        sql = (
            f"SELECT (SELECT count(*) FROM (SELECT 1 FROM listings l {self._where(filters)} LIMIT :probe) AS passing), "
            f"(SELECT count(*) FROM (SELECT search FROM listings ORDER BY id DESC LIMIT {newest}) AS newest "
            "WHERE strpos(newest.search, :q) > 0)"
        )
        used = {name: value for name, value in values.items() if f":{name}" in sql}
        counts = await self.database.fetch_one(sql, used | {"probe": LEAD_PROBE})
        assert counts is not None
        return counts[0] < LEAD_PROBE, counts[1] >= hits

    @staticmethod
    def _where(clauses: list[str]) -> str:
        return f"WHERE {' AND '.join(clauses)}" if clauses else ""

    async def _fetch(self, select: str, clauses: list[str], values: dict[str, Any], order: str = "l.id") -> list[Any]:
        sql = f"{select} {self._where(clauses)} ORDER BY {order} DESC LIMIT :limit"
        used = {name: value for name, value in values.items() if f":{name}" in sql}
        return list(await self.database.fetch_all(sql, used))


CURSOR_PATTERN = r"^[0-9a-z]{1,13}$"


class ListingQuery(BaseModel):
    """Query parameters of ``GET /listings``."""

    model_config = ConfigDict(extra="ignore", regex_engine="python-re")

    city: str | None = Field(None, max_length=100, pattern=TEXT_PATTERN)
    min_price: Price | None = None
    max_price: Price | None = None
    q: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, pattern=CURSOR_PATTERN)

    @property
    def after_id(self) -> int | None:
        return None if self.cursor is None else decode_cursor(self.cursor)


def encode_cursor(last_id: int) -> str:
    """An opaque page cursor: the last id shown, in base 36 (clients pass ``next_cursor`` back)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        last_id, digit = divmod(last_id, 36)
        text = digits[digit] + text
        if not last_id:
            return text


def decode_cursor(cursor: str) -> int:
    """Every string matching ``CURSOR_PATTERN`` is a cursor (ids past the largest are the largest)."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("not a cursor this service issued")
    return min(int(cursor, 36), _MAX_ID)
