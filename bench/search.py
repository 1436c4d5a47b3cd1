"""``python -m bench.search``: listing search at a million listings, through HTTP, cold and warm.

It generates ``--rows`` listings (Turkish words, cities, prices; a few rare words), loads them into a
fresh SQLite database and, when one answers, a fresh PostgreSQL database (created and dropped here),
through the service's own migration and search columns. Then, for each database, it starts its own
redis-server and the service exactly as the ``Procfile``'s ``web:`` line starts it, and times every
documented query shape: each shape is ``--queries`` distinct queries, asked once with the search
cache cold (``X-Cache: MISS``) and once warm (``HIT``), sequentially from one client. A last shape,
*adversarial*, is every query of ``adversarial()``: the ones a client would pick to be slow (frequent
words rarely side by side, the longest query, words run together, punctuation, lone letters, frequent
text behind filters few listings pass, price ranges of every width alone and deep in their pages). It
prints the table with each shape's slowest query and the slowest of all, writes
``bench/search-results.json``, and the ``EXPLAIN`` of each shape. Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from bench.results import machine, write_section
from gateway.testing import RedisServer, free_port
from service import search

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("KAPI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-bench-secret-bench-secret-0123"

COMMON = """daire ev bahçe manzara deniz satılık kiralık eşyalı merkezi metro yakın geniş ferah aydınlık yeni
bakımlı site havuz otopark asansör doğalgaz kombi balkon teras dubleks bisiklet araba telefon bilgisayar masa
sandalye koltuk dolap buzdolabı çamaşır makinesi fırın ütü halı perde kitap oyuncak şişli kadıköy beşiktaş
üsküdar çankaya ışıklı güneşli sessiz temiz acil sahibinden fırsat uygun fiyat pazarlık takas orijinal kutulu
garantili faturalı az kullanılmış sıfır ayarında temiz kapalı açık mutfak salon oda banyo tuvalet kiler
çatı bodrum giriş kat yüksek alçak cadde sokak mahalle okul hastane park çarşı pazar durak iskele vapur
tramvay otobüs minibüs taksi""".split()
RARE = [f"nadir{word}" for word in "alfa bravo charlie delta eko foxtrot golf hotel india juliet kilo lima mike "
        "november oskar papa quebec romeo sierra tango uniform victor viski xray yankee zulu "
        "ayva böğürtlen çilek dut elma frenk greyfurt hurma incir kayısı limon mandalina nar portakal "
        "şeftali üzüm vişne yenidünya zeytin ceviz fındık".split()]  # fmt: skip
CITIES = """İstanbul Ankara İzmir Bursa Antalya Adana Konya Gaziantep Şanlıurfa Kocaeli Mersin Diyarbakır Hatay
Manisa Kayseri Samsun Balıkesir Kahramanmaraş Van Aydın Denizli Sakarya Tekirdağ Muğla Eskişehir Mardin
Malatya Trabzon Erzurum Ordu""".split()


def log(message: str) -> None:
    print(f"[bench.search] {message}", file=sys.stderr, flush=True)


def generate(rows: int, seed: int = 20261201) -> Iterator[tuple[Any, ...]]:
    """(title, description, price_minor, currency, city, owner, created, updated, search, city_key, doc)"""
    rnd = random.Random(seed)
    stamp = "2026-12-01T00:00:00.000000Z"
    for i in range(rows):
        words = [rnd.choice(COMMON) for _ in range(rnd.randint(3, 7))]
        if i % 2000 == 0:  # each rare word in about 1 listing in 100,000
            words.append(RARE[(i // 2000) % len(RARE)])
        title = " ".join(words).capitalize()
        description = " ".join(rnd.choice(COMMON) for _ in range(rnd.randint(8, 30)))
        city = rnd.choice(CITIES)
        doc = search.document(title, description)
        yield (title, description, rnd.randint(10, 5_000_000) * 100, "TRY", city, str(rnd.randint(1, 50_000)),
               stamp, stamp, doc, search.fold(city))  # fmt: skip


async def migrate(url: str) -> None:
    from service import db

    database = await db.connect(url)
    await db.disconnect(database)


def migration_step(dialect: str, name: str) -> str:
    """The statement of the migrations that creates ``name`` (an index or a trigger the load drops)."""
    from service.db import MIGRATIONS

    return next(step for m in MIGRATIONS for step in m.dialects.get(dialect, ())
                if isinstance(step, str) and f" {name} " in step)  # fmt: skip


def load_sqlite(path: Path, rows: int) -> None:
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    connection = sqlite3.connect(path)
    started = time.monotonic()
    # A bulk load: the trigram index is built once at the end ('rebuild'), not row by row by its
    # insert trigger (which is right for the app's one-at-a-time writes, and about 60 times slower here).
    trigger = migration_step("sqlite", "listings_fts_insert")
    connection.execute("DROP TRIGGER listings_fts_insert")
    vocabulary: set[str] = set()
    connection.execute("PRAGMA cache_size = -1000000")  # 1 GB of page cache while loading
    connection.execute("PRAGMA synchronous = OFF")  # a throw-away bench database
    connection.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for row_id, row in enumerate(generate(rows), start=1):
        batch.append((row_id, *row))
        if len(batch) == 5000:
            _insert_sqlite(connection, batch, vocabulary)
            batch = []
            if row_id % 100_000 == 0:
                log(f"sqlite: {row_id:,} rows ({time.monotonic() - started:.0f} s)")
    _insert_sqlite(connection, batch, vocabulary)
    connection.executemany(
        "INSERT INTO search_words (word, reversed) VALUES (?, ?)", [(w, w[::-1]) for w in sorted(vocabulary)]
    )
    connection.execute("COMMIT")
    log(f"sqlite: rows in; building the trigram index ({time.monotonic() - started:.0f} s)")
    connection.execute("INSERT INTO listings_fts (listings_fts) VALUES ('rebuild')")
    connection.execute(trigger)
    connection.commit()
    for table in ("listings_short", "listings_words"):
        connection.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
    connection.execute("ANALYZE")
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    log(f"sqlite: {rows:,} rows in {time.monotonic() - started:.0f} s, {path.stat().st_size / 1e9:.2f} GB")


def _insert_sqlite(connection: sqlite3.Connection, batch: list[tuple[Any, ...]], vocabulary: set[str]) -> None:
    connection.executemany(
        "INSERT INTO listings (id, title, description, price_minor, currency, city, owner_id, created_at, updated_at,"
        " search, city_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    indexed = [(row[0], search.sqlite_terms(row[9], row[10], row[3])) for row in batch]
    for table in ("listings_short", "listings_words"):
        connection.executemany(
            f"INSERT INTO {table} (rowid, terms) VALUES (?, ?)", [(i, terms[table]) for i, terms in indexed]
        )
    vocabulary.update(word for row in batch for word in search.words(row[9]))


async def load_postgres(admin_url: str, name: str, rows: int) -> str | None:
    import asyncpg

    try:
        admin = await asyncpg.connect(admin_url, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        log(f"no PostgreSQL at {admin_url} ({type(exc).__name__}): SQLite only")
        return None
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    connection = await asyncpg.connect(url)
    started = time.monotonic()
    gin = ["listings_search_trgm", "listings_short_terms", "listings_words"]
    for index in gin:  # built once after the load: far faster than row by row
        await connection.execute(f"DROP INDEX {index}")
    columns = ["title", "description", "price_minor", "currency", "city", "owner_id", "created_at", "updated_at",
               "search", "city_key", "short_terms", "words"]  # fmt: skip
    batch: list[tuple[Any, ...]] = []
    done = 0
    vocabulary: set[str] = set()
    for row in generate(rows):  # the id band is added by the table's trigger
        batch.append((*row, *search.postgres_arrays(row[8], row[9], row[2]).values()))
        vocabulary.update(search.words(row[8]))
        if len(batch) == 20_000:
            await connection.copy_records_to_table("listings", records=batch, columns=columns)
            done += len(batch)
            batch = []
            if done % 100_000 == 0:
                log(f"postgresql: {done:,} rows ({time.monotonic() - started:.0f} s)")
    if batch:
        await connection.copy_records_to_table("listings", records=batch, columns=columns)
    await connection.copy_records_to_table(
        "search_words", records=[(search.term(w), w) for w in sorted(vocabulary)], columns=["term", "word"]
    )
    await connection.execute("SET maintenance_work_mem = '1GB'")
    for index in gin:
        await connection.execute(migration_step("postgresql", index))
    await connection.execute("VACUUM ANALYZE listings")
    await connection.execute("ANALYZE search_words")
    size = await connection.fetchval("SELECT pg_database_size(current_database())")
    await connection.close()
    log(f"postgresql: {rows:,} rows in {time.monotonic() - started:.0f} s, {size / 1e9:.2f} GB")
    return url


def shapes(count: int, rows: int) -> dict[str, list[dict[str, str]]]:
    rnd = random.Random(7)
    common = [w for w in COMMON if len(search.fold(w)) >= 4][:count]
    infixes = sorted({search.fold(w)[1:4] for w in COMMON if len(w) >= 5})[:count]
    pairs = [f"{a} {b}" for a, b in zip(COMMON[::2], COMMON[1::2], strict=False)][:count]
    bigrams = sorted({search.fold(w)[:2] for w in COMMON})[:count]
    cases = {
        "common word": [{"q": w} for w in common],
        "rare word": [{"q": w} for w in RARE[:count]],
        "no match": [{"q": f"zqx{i}vk"} for i in range(count)],
        "infix (3 chars)": [{"q": w} for w in infixes],
        "two words": [{"q": p} for p in pairs],
        "2-character query": [{"q": b} for b in bigrams],
        "2 characters, no match": [{"q": a + b} for a in "qwx" for b in "qwx0123456789j"][:count],
        "city + price range": [
            {
                "city": search.fold(CITIES[i % len(CITIES)]),
                "min_price": str(1000 * (i + 1)),
                "max_price": str(200_000 + 5000 * i),
            }
            for i in range(count)
        ],
        "deep cursor page": [{"cursor": format(rnd.randint(rows // 100, rows // 10), "x")} for _ in range(count)],
    }
    # Distinct from every query above: each query's first request must meet a cold cache.
    asked = {cache_key(params) for queries in cases.values() for params in queries}
    cases[ADVERSARIAL] = [params for params in adversarial(rows) if cache_key(params) not in asked]
    return cases


def cache_key(params: dict[str, str]) -> str:
    """Queries the service caches as one page (``Listings.digest`` folds the text)."""
    return json.dumps({**params, "q": search.fold(params.get("q", ""))}, sort_keys=True)


#: The shape made of every query of ``adversarial()``.
ADVERSARIAL = "adversarial"


def adversarial(rows: int) -> list[dict[str, str]]:
    """Queries a client would choose to make the search slow (each distinct: each one's first request
    meets a cold cache). Frequent words are in about 15% of the listings each, and every trigram of
    them in more."""
    rnd = random.Random(25)
    words = sorted({search.fold(w) for w in COMMON})
    frequent = [w for w in words if len(w) >= 4]
    cities = sorted({search.fold(c) for c in CITIES})
    queries: dict[str, dict[str, str]] = {}

    def add(q: str | None = None, **filters: str) -> None:
        params = ({"q": q} if q is not None else {}) | filters
        queries.setdefault(cache_key(params), params)

    def sample(n: int) -> list[str]:
        return rnd.sample(frequent, n)

    for _ in range(20):  # two frequent words: every listing holds many of their trigrams, ~0.1% the pair
        add(" ".join(sample(2)))
    for n in (3, 4, 6):  # three or more in a row: a handful of listings, or none
        for _ in range(10):
            add(" ".join(sample(n)))
    for _ in range(15):  # the same, cut mid-word at both ends
        a, b, c = sample(3)
        add(f"{a[-3:]} {b} {c[:2]}")
        add(f"{a[-2:]} {c[:2]}")
    for _ in range(5):  # the longest query: frequent words in a row, one word again and again, one letter
        add(" ".join(rnd.sample(words, len(words)))[:200])
    for word in sample(6):
        add(((word + " ") * 50)[:200].strip())
        add((word * 50)[:200])
    for q in ("a" * 200, ("a " * 100).strip(), ("e e " * 50).strip(), ("ar " * 66).strip(), ("ev " * 66).strip()):
        add(q)
    for _ in range(15):  # words run together: every trigram frequent, the string in no listing
        add("".join(sample(2)))
    for q in ("...", "+++", "- - -", "!!", ". . . .", "%%%", "___", "(-)", "... ...", "'" * 200):  # no letter
        add(q)
    for q in ("a a", "a a a", "e e e e", "i i", "ar ar ar ar", "an an", "la la la", "e", "a", "i", "ii", "aaa"):
        add(q)
    for _ in range(15):  # frequent text behind filters few listings pass
        word, low = rnd.choice(frequent), rnd.randint(10, 4_990_000)
        add(word, min_price=str(low), max_price=str(low + rnd.choice([100, 1000, 10_000, 100_000])))
        add(word[:2], city=rnd.choice(cities), min_price=str(low), max_price=str(low + 50_000))
        add(" ".join(sample(2)), city=rnd.choice(cities))
        add(" ".join(sample(3)), min_price=str(low), max_price=str(low + 500_000))
    for _ in range(5):  # deep pages of a pair and of a trio
        add(" ".join(sample(2)), cursor=format(rnd.randint(rows // 10, rows // 2), "x"))
        add(" ".join(sample(3)), cursor=format(rnd.randint(rows // 10, rows // 2), "x"))
    for _ in range(5):  # filters alone: ranges of every width (most listings, or a few), deep pages of them
        low = rnd.randint(10, 4_000_000)
        for width in (1000, 50_000, 500_000, 3_000_000):
            add(min_price=str(low), max_price=str(low + width))
        add(min_price=str(low), max_price=str(low + 20_000), cursor=format(rnd.randint(rows // 100, rows // 2), "x"))
        add(min_price=str(low), cursor=format(rnd.randint(rows // 100, rows // 2), "x"))
        add(max_price=str(rnd.randint(10, 100_000)))
        add(city=rnd.choice(cities), min_price=str(low), max_price=str(low + rnd.choice([5000, 1_000_000])))
    return list(queries.values())


def cursor_of(params: dict[str, str]) -> dict[str, str]:
    """The service's cursors are base 36; the shapes above name ids in hex for brevity."""
    if "cursor" in params:
        value = int(params["cursor"], 16)
        digits, text = "0123456789abcdefghijklmnopqrstuvwxyz", ""
        while value:
            value, digit = divmod(value, 36)
            text = digits[digit] + text
        return {**params, "cursor": text or "0"}
    return params


def serve(database_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], RedisServer, str]:
    redis_server = RedisServer().start()
    port = free_port()
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    command = web.split(":", 1)[1].strip()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "DATABASE_URL": database_url,
           "JWT_SECRET": SECRET, "RATE_LIMIT": "10000000/hour", "PORT": str(port), "HOST": "127.0.0.1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    log_file = (workdir / f"service-{port}.log").open("wb")
    process = subprocess.Popen(
        ["sh", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, redis_server, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / f"service-{port}.log").read_text()[-3000:])
        time.sleep(0.2)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def measure(url: str, cases: dict[str, list[dict[str, str]]]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        # A running service has its database warm; the measured queries still meet a cold search cache.
        for word in [*COMMON[::3], *RARE[-5:], "warm-up", "zz", "ab"]:
            client.get("/listings", params={"q": word, "limit": "7"})
        for shape, queries in cases.items():
            timings: dict[str, list[float]] = {"cold": [], "warm": []}
            matched = 0
            for phase, expected in (("cold", "MISS"), ("warm", "HIT")):
                for params in queries:
                    started = time.perf_counter()
                    response = client.get("/listings", params=cursor_of(params))
                    timings[phase].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
                    assert response.headers["x-cache"] == expected, (shape, params, response.headers["x-cache"])
                    if phase == "cold":
                        matched += len(response.json()["items"]) > 0
            slowest = sorted(zip(timings["cold"], queries, strict=True), key=lambda pair: -pair[0])
            results[shape] = {
                "cold_p50": statistics.median(timings["cold"]), "cold_p95": percentile(timings["cold"], 0.95),
                "cold_max": slowest[0][0], "slowest": [{"ms": round(t, 2), "params": q} for t, q in slowest[:5]],
                "warm_p50": statistics.median(timings["warm"]), "warm_p95": percentile(timings["warm"], 0.95),
                "queries": len(queries), "with_results": matched,
                "cold_ms": [round(t, 2) for t in timings["cold"]], "warm_ms": [round(t, 2) for t in timings["warm"]],
            }  # fmt: skip
            r = results[shape]
            log(f"  {shape}: cold p95 {r['cold_p95']:.2f} ms, max {r['cold_max']:.2f} ms ({slowest[0][1]}), "
                f"warm p95 {r['warm_p95']:.2f} ms")  # fmt: skip
    return results


def worst(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The slowest cold query of every shape measured on one database."""
    shape = max(results, key=lambda name: results[name]["cold_max"])
    return {"shape": shape, **results[shape]["slowest"][0]}


class Recorder:
    """Stands in for the store's ``Database``: records each statement the store issues (and, with
    ``run``, runs it for its rows, so the store takes the path it takes in the service)."""

    class _Row:
        def __init__(self, record: Any) -> None:
            self._mapping = record

        def __getitem__(self, index: int) -> Any:
            return self._mapping[index]

    def __init__(self, dialect: str, run: Callable[[str, dict[str, Any]], Awaitable[list[Any]]]) -> None:
        self.url = SimpleNamespace(dialect=dialect)
        self.run = run
        self.sql: list[tuple[str, dict[str, Any]]] = []

    async def fetch_all(self, sql: str, values: dict[str, Any]) -> list[Any]:
        self.sql.append((sql, values))
        return [self._Row(r) for r in await self.run(sql, values)]

    async def fetch_one(self, sql: str, values: dict[str, Any]) -> Any:
        rows = await self.fetch_all(sql, values)
        return rows[0] if rows else None

    async def fetch_val(self, sql: str, values: dict[str, Any] | None = None) -> Any:
        row = await self.fetch_one(sql, values or {})
        return None if row is None else row[0]


def label(sql: str, shape: str) -> str:
    """What a statement of the store's search does, for the plans' headings."""
    from service.store import RECENT_WINDOW

    kinds = {"search_words": "the vocabulary", "count(*)": "which index leads", f"LIMIT {RECENT_WINDOW})":
             f"the newest {RECENT_WINDOW:,} rows", "generate_series": "the index, newest id bands first",
             "MATCH": "the index", "l.id + 0": "the index"}  # fmt: skip
    return next((f"{shape}, {kind}" for marker, kind in kinds.items() if marker in sql), shape)


def add_plan(plans: dict[str, list[str]], name: str, plan: list[str]) -> None:
    """A statement run again (the next id bands) is listed again, numbered."""
    key, n = name, 1
    while key in plans:
        n += 1
        key = f"{name} ({n})"
    plans[key] = plan


def explain_sqlite(path: Path, cases: dict[str, list[dict[str, str]]]) -> dict[str, list[str]]:
    """The plans of the statements the store runs for the first query of each shape (each run for its
    rows, so the store takes the path it takes in the service)."""
    from service.store import ListingQuery, ListingStore

    plans: dict[str, list[str]] = {}
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row

    async def fetch(sql: str, values: dict[str, Any]) -> list[Any]:
        return connection.execute(sql, values).fetchall()

    for shape, queries in cases.items():
        recorder = Recorder("sqlite", fetch)
        asyncio.run(ListingStore(recorder).search(ListingQuery.model_validate(cursor_of(queries[0]))))  # type: ignore[arg-type]
        for sql, values in recorder.sql:
            plan = connection.execute("EXPLAIN QUERY PLAN " + sql, values)
            add_plan(plans, label(sql, shape), [row[3] for row in plan.fetchall()])
    connection.close()
    return plans


async def explain_postgres(url: str, cases: dict[str, list[dict[str, str]]]) -> dict[str, list[str]]:
    """The plans of the statements the store runs for the first query of each shape.

    Each statement is run for its rows (so the store takes the path it takes in the service: the
    vocabulary, the newest rows, then the index, newest id bands first) and explained with
    ``ANALYZE``.
    """
    import asyncpg

    from service.store import ListingQuery, ListingStore

    plans: dict[str, list[str]] = {}
    connection = await asyncpg.connect(url)

    def numbered(sql: str, values: dict[str, Any]) -> str:
        names = list(values)
        for name in sorted(names, key=len, reverse=True):
            sql = sql.replace(f":{name}", f"${names.index(name) + 1}")
        return sql

    async def fetch(sql: str, values: dict[str, Any]) -> list[Any]:
        return list(await connection.fetch(numbered(sql, values), *values.values()))

    for shape, queries in cases.items():
        recorder = Recorder("postgresql", fetch)
        await ListingStore(recorder).search(ListingQuery.model_validate(cursor_of(queries[0])))  # type: ignore[arg-type]
        for sql, values in recorder.sql:
            explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + numbered(sql, values)
            rows = await connection.fetch(explain, *values.values())
            add_plan(plans, label(sql, shape), [row[0] for row in rows])
    await connection.close()
    return plans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "search-results.json")
    parser.add_argument("--keep", type=Path, help="keep the databases here (and reuse them when present)")
    args = parser.parse_args(argv)
    cases = shapes(args.queries, args.rows)
    report: dict[str, Any] = {
        "rows": args.rows, "queries_per_shape": args.queries, "results": {}, "worst": {}, "plans": {}
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="kapi-search-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        databases: list[tuple[str, str]] = []
        sqlite_path = workdir / f"listings-{args.rows}.db"
        if not (args.keep and sqlite_path.exists()):
            load_sqlite(sqlite_path, args.rows)
        databases.append(("sqlite", f"sqlite+aiosqlite:///{sqlite_path}"))
        report["plans"]["sqlite"] = explain_sqlite(sqlite_path, cases)
        pg_name = f"kapi_bench_search_{args.rows}" if args.keep else f"kapi_bench_search_{os.getpid()}"
        pg_url = None
        if not args.no_postgres:
            pg_url = asyncio.run(_existing(POSTGRES, pg_name)) if args.keep else None
            pg_url = pg_url or asyncio.run(load_postgres(POSTGRES, pg_name, args.rows))
        if pg_url:
            databases.append(("postgresql", pg_url))
            report["plans"]["postgresql"] = asyncio.run(explain_postgres(pg_url, cases))
        try:
            for name, url in databases:
                log(f"{name}: measuring through HTTP")
                process, redis_server, base = serve(url, workdir)
                try:
                    report["results"][name] = measure(base, cases)
                    report["worst"][name] = worst(report["results"][name])
                finally:
                    process.terminate()
                    process.wait(timeout=20)
                    redis_server.close()
        finally:
            if pg_url and not args.keep:
                asyncio.run(_drop(POSTGRES, pg_name))
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(table(report))
    print("\n".join(slowest(report)))
    write_section("search", section(report), args.out.parent / "RESULTS.md")
    return 0


def section(report: dict[str, Any]) -> str:
    """The RESULTS.md section: the table, then every query plan."""
    lines = [
        "## Search at scale (`python -m bench.search`)",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')} · {machine()} · {report['rows']:,} listings · "
        f"{report['queries_per_shape']} queries per shape through HTTP (the Procfile's `web:` line, its own "
        "redis-server); cold = each query's first request (cache empty), warm = the same again (cached page); "
        f"*{ADVERSARIAL}* is every one of {len(adversarial(report['rows']))} queries chosen to be slow "
        "(`bench/search.py`, `adversarial`).",
        "",
        table(report),
        "",
        *slowest(report),
        "",
        "Query plans (`EXPLAIN QUERY PLAN` / `EXPLAIN (ANALYZE, COSTS OFF)`, one query of each shape):",
    ]
    for db, plans in report["plans"].items():
        for shape, plan in plans.items():
            text = plan if isinstance(plan, str) else "\n".join(map(str, plan))
            lines += ["", f"{db}, {shape}:", "", "```", text.rstrip(), "```"]
    return "\n".join(lines)


async def _existing(admin_url: str, name: str) -> str | None:
    """A database kept by an earlier run (--keep), if it is there and loaded."""
    import asyncpg

    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        loaded = await connection.fetchval("SELECT count(*) FROM listings") > 0
    except asyncpg.PostgresError:
        loaded = False
    await connection.close()
    return url if loaded else None


async def _drop(admin_url: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def table(report: dict[str, Any]) -> str:
    databases = list(report["results"])
    head = "| query shape | " + " | ".join(f"{db} cold p50 / p95 / max | {db} warm p50 / p95" for db in databases)
    lines = [head + " |", "|---|" + "---|---|" * len(databases)]
    for shape in next(iter(report["results"].values())):
        cells = []
        for db in databases:
            r = report["results"][db][shape]
            cells += [f"{r['cold_p50']:.1f} / {r['cold_p95']:.1f} / {r['cold_max']:.1f} ms",
                      f"{r['warm_p50']:.1f} / {r['warm_p95']:.1f} ms"]  # fmt: skip
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slowest(report: dict[str, Any]) -> list[str]:
    """The slowest query of all on each database, and the slowest adversarial ones."""
    lines = []
    for db, seen in report["worst"].items():
        lines.append(f"Slowest query on {db}: {seen['ms']:.1f} ms, `{seen['params']}` ({seen['shape']}); "
                     f"the slowest {ADVERSARIAL} ones: " + ", ".join(
                         f"{s['ms']:.1f} ms `{s['params']}`" for s in report["results"][db][ADVERSARIAL]["slowest"][:3]
                     ) + ".")  # fmt: skip
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
