"""The database: a ``databases.Database`` and an ordered, idempotent migration step (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from databases import Database

from service import search

logger = logging.getLogger("service.db")

#: A step is a statement, or an async function of the database (a data step, in the same transaction).
Step = str | Callable[[Database], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[Step, ...] = ()
    #: Steps for one dialect only, run after ``statements``.
    dialects: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)


async def _rows_in_id_order(database: Database, columns: str, *, batch: int) -> AsyncIterator[list[Any]]:
    """Every listing's ``columns`` (``id`` first), in id order, a batch at a time."""
    last = 0
    while True:
        rows = await database.fetch_all(
            f"SELECT id, {columns} FROM listings WHERE id > :last ORDER BY id LIMIT :batch",
            {"last": last, "batch": batch},
        )
        if not rows:
            return
        yield rows
        last = rows[-1][0]


async def _fold_existing_rows(database: Database, *, batch: int = 2000) -> None:
    """Recompute the search columns of every row with ``service.search`` (and, on SQLite, fill the
    1-2 character index), in id order, a batch at a time."""
    postgres = database.url.dialect.startswith("postgres")
    async for rows in _rows_in_id_order(database, "title, description, city", batch=batch):
        updates = []
        for row in rows:
            doc = search.document(row[1], row[2])
            update = {"id": row[0], "search": doc, "city_key": search.fold(row[3])}
            if postgres:
                update["short_terms"] = search.short_terms(doc)
            updates.append(update)
        assignments = ", ".join(f"{name} = :{name}" for name in updates[0] if name != "id")
        await database.execute_many(f"UPDATE listings SET {assignments} WHERE id = :id", updates)
        if not postgres:
            await database.execute_many(
                "INSERT INTO listings_short (rowid, terms) VALUES (:id, :terms)",
                [{"id": u["id"], "terms": " ".join(search.short_terms(u["search"]))} for u in updates],
            )


async def _index_words_of_existing_rows(database: Database, *, batch: int = 2000) -> None:
    """Fill the word index and the vocabulary from every row's ``search`` column, in id order, a batch
    at a time; the 1-2 character index is filled again, now with each row's city and price band. On
    PostgreSQL a row written whole is also laid out by the new ``toast_tuple_target`` (its arrays out of
    line), one with a column added is not."""
    postgres = database.url.dialect.startswith("postgres")
    if not postgres:
        await database.execute("INSERT INTO listings_short (listings_short) VALUES ('delete-all')")
    async for rows in _rows_in_id_order(database, "search, city_key, price_minor", batch=batch):
        vocabulary = sorted({word for row in rows for word in search.words(row[1])})
        # One statement per batch, the batch as JSON (a statement per row is a round trip per row).
        if postgres:
            batch_rows = [{"id": row[0], **search.postgres_arrays(row[1], row[2], row[3])} for row in rows]
            for arrays in batch_rows:  # schema 5's terms: migration 6 adds the longer runs
                arrays["words"] = [t for t in arrays["words"] if not _long_run_term(t)]
            await database.execute(
                "UPDATE listings AS l SET words = ARRAY(SELECT jsonb_array_elements_text(v.words)), "
                "short_terms = ARRAY(SELECT jsonb_array_elements_text(v.short_terms)) "
                "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id bigint, words jsonb, short_terms jsonb) "
                "WHERE l.id = v.id",
                {"rows": json.dumps(batch_rows, ensure_ascii=False)},
            )
        else:
            # Schema 5's exact terms (runs of 3 at most): migration 6 forgets them to add the longer runs.
            indexed = [[row[0], *search.sqlite_terms(row[1], row[2], row[3], longest_run=3).values()] for row in rows]
            for n, table in enumerate(("listings_short", "listings_words"), start=1):
                await database.execute(
                    f"INSERT INTO {table} (rowid, terms) SELECT json_extract(value, '$[0]'), "
                    f"json_extract(value, '$[{n}]') FROM json_each(:rows)",
                    {"rows": json.dumps(indexed, ensure_ascii=False)},
                )
        await remember_words(database, vocabulary)


def _long_run_term(text: str) -> bool:
    """A word index term of a word written 4 or more times in a row (``search.word_terms``)."""
    parts = text.split(" ")
    return len(parts) > 3 and len(set(parts)) == 1


async def _index_word_runs(database: Database, *, batch: int = 2000) -> None:
    """Schema 6: the word index holds a word written k times in a row for every k up to 8, not 3
    (``search.LONGEST_RUN``). Only the rows that repeat a word 4 or more times have new terms; they
    are found in id order, a batch at a time, and indexed again (on SQLite a contentless table forgets
    a row when given its exact old terms, schema 5's)."""
    postgres = database.url.dialect.startswith("postgres")
    async for rows in _rows_in_id_order(database, "search, city_key, price_minor", batch=batch):
        for row in rows:
            if not search.has_long_run(row[1]):
                continue
            if postgres:
                words = search.postgres_arrays(row[1], row[2], row[3])["words"]
                await database.execute(
                    "UPDATE listings SET words = :words WHERE id = :id", {"id": row[0], "words": words}
                )
                continue
            old = search.sqlite_terms(row[1], row[2], row[3], longest_run=3)["listings_words"]
            new = search.sqlite_terms(row[1], row[2], row[3])["listings_words"]
            await database.execute(
                "INSERT INTO listings_words (listings_words, rowid, terms) VALUES ('delete', :id, :terms)",
                {"id": row[0], "terms": old},
            )
            await database.execute(
                "INSERT INTO listings_words (rowid, terms) VALUES (:id, :terms)", {"id": row[0], "terms": new}
            )


async def _create_id_band_trigger(database: Database) -> None:
    """PostgreSQL: the trigger that adds a row's id band (``search.id_band``) to its term arrays, on
    insert (the database assigns the id) and whenever the store writes the arrays again."""
    await database.execute(f"""CREATE OR REPLACE FUNCTION listings_id_band() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE band TEXT := ' id:' || (NEW.id / {search.ID_BAND});
        BEGIN
            NEW.words := array_append(array_remove(NEW.words, band), band);
            NEW.short_terms := array_append(array_remove(NEW.short_terms, band), band);
            RETURN NEW;
        END $$""")
    await database.execute("DROP TRIGGER IF EXISTS listings_id_band ON listings")
    await database.execute(
        "CREATE TRIGGER listings_id_band BEFORE INSERT OR UPDATE OF words, short_terms ON listings "
        "FOR EACH ROW EXECUTE FUNCTION listings_id_band()"
    )


async def remember_words(database: Database, words: list[str]) -> None:
    """Add ``words`` to the vocabulary (``search_words``), in one statement; words already there stay.

    The vocabulary only grows: a word whose listings are all gone stays, and finds none."""
    if not words:
        return
    if database.url.dialect.startswith("postgres"):
        # In one order for every writer: two inserting the same new words wait, never deadlock.
        await database.execute(
            "INSERT INTO search_words (term, word) "
            "SELECT * FROM unnest(CAST(:terms AS text[]), CAST(:words AS text[])) ORDER BY 1 ON CONFLICT DO NOTHING",
            {"terms": [search.term(word) for word in words], "words": words},
        )
    else:
        await database.execute(
            "INSERT OR IGNORE INTO search_words (word, reversed) "
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:words)",
            {"words": json.dumps([[word, word[::-1]] for word in words], ensure_ascii=False)},
        )


# ``{id}`` becomes the dialect's auto-increment primary key. Every statement is idempotent, so two
# processes starting at once cannot break each other (PostgreSQL also takes an advisory lock).
#: PostgreSQL: a price range's page (no city) takes its ids from ``listings_price_id`` alone, sorted
#: there, then reads its rows; with a cursor the planner otherwise walked the primary key, reading every
#: row for its price (a 0.4% range: 7,349 rows, 90 ms cold). So does a text query whose filters few
#: listings pass (``ListingStore._filters_pass``), with ``listings_city_price_id``.
_PRICE_ID_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS listings_price_id ON listings (price_minor) INCLUDE (id)",
    "DROP INDEX IF EXISTS listings_price",
    "CREATE INDEX IF NOT EXISTS listings_city_price_id ON listings (city_key, price_minor) INCLUDE (id)",
    "DROP INDEX IF EXISTS listings_city_price",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "listings and users",
        (
            """CREATE TABLE IF NOT EXISTS listings (
                id {id},
                title TEXT NOT NULL,
                description TEXT NOT NULL,
                price_minor BIGINT NOT NULL,
                currency TEXT NOT NULL,
                city TEXT NOT NULL,
                owner_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                search TEXT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS listings_city_id ON listings (city, id)",
            "CREATE INDEX IF NOT EXISTS listings_owner_id ON listings (owner_id, id)",
            """CREATE TABLE IF NOT EXISTS users (
                id {id},
                phone TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "cache invalidation outbox",
        (
            # Invalidations that could not reach Redis: kept here (durable, shared by every process)
            # until one process deletes the key in Redis.
            """CREATE TABLE IF NOT EXISTS cache_invalidations (
                cache_key TEXT PRIMARY KEY,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "Turkish-aware, indexed search",
        dialects={
            # FTS5's trigram tokenizer indexes every 3-character substring of the folded text (kept by
            # triggers); listings_short, contentless, the 1-2 character ones (kept by the store in
            # each write's transaction). The indexes make every documented filter an index search.
            "sqlite": (
                "ALTER TABLE listings ADD COLUMN city_key TEXT NOT NULL DEFAULT ''",
                "CREATE VIRTUAL TABLE IF NOT EXISTS listings_short USING fts5(terms, content='', "
                "tokenize='ascii', detail='none')",
                _fold_existing_rows,
                "CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(search, content='listings', "
                "content_rowid='id', tokenize='trigram')",
                "INSERT INTO listings_fts (listings_fts) VALUES ('rebuild')",
                """CREATE TRIGGER IF NOT EXISTS listings_fts_insert AFTER INSERT ON listings BEGIN
                    INSERT INTO listings_fts (rowid, search) VALUES (new.id, new.search);
                END""",
                """CREATE TRIGGER IF NOT EXISTS listings_fts_delete AFTER DELETE ON listings BEGIN
                    INSERT INTO listings_fts (listings_fts, rowid, search) VALUES ('delete', old.id, old.search);
                END""",
                """CREATE TRIGGER IF NOT EXISTS listings_fts_update AFTER UPDATE OF search ON listings BEGIN
                    INSERT INTO listings_fts (listings_fts, rowid, search) VALUES ('delete', old.id, old.search);
                    INSERT INTO listings_fts (rowid, search) VALUES (new.id, new.search);
                END""",
                "DROP INDEX IF EXISTS listings_city_id",
                "CREATE INDEX IF NOT EXISTS listings_city_id ON listings (city_key, id)",
                "CREATE INDEX IF NOT EXISTS listings_city_price ON listings (city_key, price_minor)",
                "CREATE INDEX IF NOT EXISTS listings_price ON listings (price_minor)",
                "ANALYZE",
            ),
            # pg_trgm's GIN index serves LIKE '%…%' on the folded text; short_terms (GIN) the 1-2
            # character queries. CREATE EXTENSION needs a role allowed to (docs/reference/http-api.md, "Indexes").
            "postgresql": (
                "CREATE EXTENSION IF NOT EXISTS pg_trgm",
                "ALTER TABLE listings ADD COLUMN IF NOT EXISTS city_key TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE listings ADD COLUMN IF NOT EXISTS short_terms TEXT[] NOT NULL DEFAULT '{}'",
                _fold_existing_rows,
                "CREATE INDEX IF NOT EXISTS listings_search_trgm ON listings USING gin (search gin_trgm_ops)",
                "CREATE INDEX IF NOT EXISTS listings_short_terms ON listings USING gin (short_terms)",
                "DROP INDEX IF EXISTS listings_city_id",
                "CREATE INDEX IF NOT EXISTS listings_city_id ON listings (city_key, id)",
                "CREATE INDEX IF NOT EXISTS listings_city_price ON listings (city_key, price_minor)",
                "CREATE INDEX IF NOT EXISTS listings_price ON listings (price_minor)",
                "ANALYZE listings",
            ),
        },
    ),
    Migration(
        4,
        "city pages from an index-only scan",
        dialects={
            # A city page (with or without a price range) takes its ids from this index alone (the
            # price is in it), then reads 21 rows, not the ~800 scattered ones the filter used to
            # read through (city_key, id), which it replaces.
            "postgresql": (
                "CREATE INDEX IF NOT EXISTS listings_city_id_price ON listings (city_key, id) INCLUDE (price_minor)",
                "DROP INDEX IF EXISTS listings_city_id",
            ),
        },
    ),
    Migration(
        5,
        "word index and vocabulary",
        dialects={
            # Each distinct word and pair of adjacent words of a row (``search.word_terms``), and every
            # word seen (``search_words``): a query of 3+ characters is narrowed to the rows that hold
            # the words it needs, next to each other, before its substring is checked (``WordQuery``).
            # Two frequent words rarely side by side are then a handful of rows, not every row holding
            # both words' trigrams. On SQLite, listings_words (contentless) is kept by the store in each
            # write's transaction, like listings_short; the vocabulary's trigram index by a trigger. Both
            # hold each row's city and price band too (``search.sqlite_terms``: listings_short is filled
            # again), so FTS5 meets a query's text and filters itself.
            "sqlite": (
                "CREATE VIRTUAL TABLE IF NOT EXISTS listings_words USING fts5(terms, content='', "
                "tokenize='ascii', detail='none')",
                "CREATE TABLE IF NOT EXISTS search_words (word TEXT PRIMARY KEY, reversed TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS search_words_reversed ON search_words (reversed)",
                "CREATE VIRTUAL TABLE IF NOT EXISTS search_words_fts USING fts5(word, content='search_words', "
                "tokenize='trigram')",
                """CREATE TRIGGER IF NOT EXISTS search_words_fts_insert AFTER INSERT ON search_words BEGIN
                    INSERT INTO search_words_fts (rowid, word) VALUES (new.rowid, new.word);
                END""",
                _index_words_of_existing_rows,
                "ANALYZE",
            ),
            # PostgreSQL's arrays also hold the row's city, price band and id band (``search.postgres_arrays``,
            # the trigger below), so one GIN search meets a query's text and filters, newest ids first.
            # The arrays go out of line (toast_tuple_target), so the newest-rows pass of a search reads
            # narrow rows: the table's heap is half its size. ``search`` stays in line (MAIN). The text
            # indexes are dropped while every row is rewritten, and built again after.
            "postgresql": (
                "ALTER TABLE listings ADD COLUMN IF NOT EXISTS words TEXT[] NOT NULL DEFAULT '{}'",
                "ALTER TABLE listings SET (toast_tuple_target = 512)",
                "ALTER TABLE listings ALTER COLUMN search SET STORAGE MAIN",
                "CREATE TABLE IF NOT EXISTS search_words (term TEXT PRIMARY KEY, word TEXT NOT NULL)",
                _create_id_band_trigger,
                "DROP INDEX IF EXISTS listings_search_trgm",
                "DROP INDEX IF EXISTS listings_short_terms",
                "SET LOCAL maintenance_work_mem = '256MB'",
                _index_words_of_existing_rows,
                "CREATE INDEX IF NOT EXISTS listings_search_trgm ON listings USING gin (search gin_trgm_ops)",
                "CREATE INDEX IF NOT EXISTS listings_short_terms ON listings USING gin (short_terms)",
                "CREATE INDEX IF NOT EXISTS listings_words ON listings USING gin (words)",
                "CREATE INDEX IF NOT EXISTS search_words_trgm ON search_words USING gin (word gin_trgm_ops)",
                'CREATE INDEX IF NOT EXISTS search_words_prefix ON search_words ((left(word, 200) COLLATE "C"))',
                "CREATE INDEX IF NOT EXISTS search_words_suffix ON search_words "
                '((left(reverse(word), 200) COLLATE "C"))',
                *_PRICE_ID_INDEXES,
                "ANALYZE listings",
                "ANALYZE search_words",
            ),
        },
    ),
    Migration(
        6,
        "word runs up to 8 in the word index",
        # A query repeating a word many times needs listings that repeat it as often (up to 8), not
        # three times: 25 of a million listings say "dolap dolap dolap", and a 200-character "dolap
        # dolap ..." read every one of them cold (50 ms on SQLite) to find none.
        (_index_word_runs,),
        # Databases that reached schema 5 before its price indexes were added get them here.
        dialects={"postgresql": (*_PRICE_ID_INDEXES, "ANALYZE listings")},
    ),
)

_AUTO_ID = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
}


def dialect(database: Database) -> str:
    return "postgresql" if database.url.dialect.startswith("postgres") else "sqlite"


async def migrate(database: Database) -> list[int]:
    """Apply every migration not yet recorded in ``schema_migrations``; returns the versions applied."""
    kind = dialect(database)
    applied: list[int] = []
    async with database.transaction():
        if kind == "postgresql":
            await database.execute("SELECT pg_advisory_xact_lock(4242017)")
        await database.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        done = {row[0] for row in await database.fetch_all("SELECT version FROM schema_migrations")}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for step in (*migration.statements, *migration.dialects.get(kind, ())):
                if isinstance(step, str):
                    await database.execute(step.replace("{id}", _AUTO_ID[kind]))
                else:
                    await step(database)
            await database.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (:version, :name) ON CONFLICT DO NOTHING",
                {"version": migration.version, "name": migration.name},
            )
            applied.append(migration.version)
    if applied:
        logger.info("database migrated to version %s", applied[-1])
    return applied


_DISCARD = "_kapi_discard"


def discard(connection: Any) -> None:
    """Close this pooled SQLite connection when it is released, instead of keeping it (a statement
    that was given up on may still run on its thread)."""
    setattr(connection, _DISCARD, True)


class SQLitePool:
    """Keeps a few SQLite connections open between queries.

    ``databases``' SQLite backend opens a new connection (with its own thread) for every query a
    request makes outside a transaction, and closes it after: measured at about 5 ms per query on
    these machines, most of a cold search or a cache miss. This hands released connections out
    again, up to ``size`` idle ones; a connection released inside a transaction (an interrupted
    write) is closed, never reused.

    This class is the one place that relies on ``databases``' internals, checked against databases
    >=0.9,<0.10 (the range ``pyproject.toml`` pins; ``tests/test_upstream_contracts.py`` fails, naming
    it, when a release changes them): the SQLite backend's private ``_pool`` (``databases.backends.sqlite.
    SQLitePool``: ``acquire()`` an ``aiosqlite`` connection, ``release(connection)``, and ``_memref``,
    which the backend's ``disconnect()`` reads and clears), asked for a connection by every query, and
    handed to each connection object the backend makes, which keeps it: ``install`` runs before the
    database connects."""

    def __init__(self, inner: Any, size: int = 8) -> None:
        self._inner = inner
        self._idle: list[Any] = []
        self.size = size

    @classmethod
    def install(cls, database: Database, size: int = 8) -> SQLitePool:
        """Put a pool of this kind in front of the SQLite ``database``'s own (before it connects)."""
        backend = database._backend
        pool = backend._pool = cls(backend._pool, size)
        return pool

    @staticmethod
    def of(database: Database) -> SQLitePool | None:
        """The pool ``install`` put in front of ``database``'s, if any."""
        pool = getattr(database._backend, "_pool", None)
        return pool if isinstance(pool, SQLitePool) else None

    @property
    def _memref(self) -> Any:  # read by the backend's disconnect()
        return self._inner._memref

    @_memref.setter
    def _memref(self, value: Any) -> None:
        self._inner._memref = value

    async def acquire(self) -> Any:
        if self._idle:
            return self._idle.pop()
        return await self._inner.acquire()

    async def release(self, connection: Any) -> None:
        if connection.in_transaction or getattr(connection, _DISCARD, False) or len(self._idle) >= self.size:
            await self._inner.release(connection)
        else:
            self._idle.append(connection)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._inner.release(connection)


async def connect(url: str) -> Database:
    database = Database(url)
    if dialect(database) == "sqlite":
        SQLitePool.install(database)
    await database.connect()
    if dialect(database) == "sqlite":
        # WAL lets readers run while a writer commits; the setting is stored in the file.
        await database.execute("PRAGMA journal_mode=WAL")
    await migrate(database)
    return database


async def disconnect(database: Database) -> None:
    """``database.disconnect()``, closing the connections ``SQLitePool`` kept."""
    await database.disconnect()
    pool = SQLitePool.of(database)
    if pool is not None:
        await pool.close()
