"""The listings API end to end against a real Redis and a temporary SQLite file."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from service import search
from service.app import create_app
from service.catalog import Listings
from service.store import ListingQuery
from tests.conftest import bearer, login, make_settings, postgres_database, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """Every listing test runs on SQLite and on a real PostgreSQL (when one is reachable)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}"
    else:
        async with postgres_database() as url:
            yield url


BIKE = {"title": "Bisiklet", "description": "Az kullanılmış", "price": "1250.50", "city": "İstanbul"}


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/listings", json={**BIKE, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{label_text}\}} (\S+)$", text, re.M)
    assert match, f"{name}{{{label_text}}} not in metrics"
    return float(match.group(1))


async def test_create_returns_201_location_and_the_listing(client: httpx.AsyncClient) -> None:
    response = await client.post("/listings", json=BIKE)

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/listings/{body['id']}"
    assert body["price"] == "1250.50" and body["currency"] == "TRY" and body["city"] == "İstanbul"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])
    assert body["created_at"] == body["updated_at"]
    assert set(body) == {"id", "title", "description", "price", "currency", "city", "owner_id", "created_at",
                         "updated_at"}  # fmt: skip


async def test_read_is_a_miss_then_a_hit_under_the_seed_key(client: httpx.AsyncClient, redis: Redis) -> None:
    listing = await create(client)

    first = await client.get(f"/listings/{listing['id']}")
    second = await client.get(f"/listings/{listing['id']}")

    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["x-cache"]) == (200, "HIT")
    assert first.json() == second.json() == listing
    assert orjson.loads(await redis.get(f"listing:{listing['id']}")) == listing
    assert 3598 <= await redis.ttl(f"listing:{listing['id']}") <= 3600


async def test_etag_is_strong_stable_and_answers_if_none_match(client: httpx.AsyncClient) -> None:
    listing = await create(client)
    first = await client.get(f"/listings/{listing['id']}")
    second = await client.get(f"/listings/{listing['id']}")
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag) and second.headers["etag"] == etag

    cached = await client.get(f"/listings/{listing['id']}", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag

    await client.patch(f"/listings/{listing['id']}", json={"price": "99"})
    changed = await client.get(f"/listings/{listing['id']}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_writes_remove_the_cache_entry_before_responding(
    client: httpx.AsyncClient, redis: Redis, method: str
) -> None:
    listing = await create(client)
    path = f"/listings/{listing['id']}"
    await client.get(path)
    assert await redis.exists(f"listing:{listing['id']}") == 1

    if method == "PATCH":
        response = await client.patch(path, json={"title": "Yeni bisiklet", "price": 1100})
        assert response.status_code == 200 and response.json()["price"] == "1100.00"
    else:
        assert (await client.delete(path)).status_code == 204
    assert await redis.exists(f"listing:{listing['id']}") == 0

    after = await client.get(path)
    if method == "PATCH":
        assert (after.headers["x-cache"], after.json()["title"]) == ("MISS", "Yeni bisiklet")
        assert after.json()["updated_at"] > listing["updated_at"]
    else:
        assert after.status_code == 404
        assert after.headers["content-type"] == "application/problem+json"


async def test_missing_listing_is_404_problem_and_cached_as_a_miss(client: httpx.AsyncClient, redis: Redis) -> None:
    first = await client.get("/listings/4242")
    second = await client.get("/listings/4242")
    assert first.status_code == second.status_code == 404
    assert first.json()["status"] == 404 and first.headers["content-type"] == "application/problem+json"
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert 0 < await redis.ttl("listing:4242") <= 60


async def test_creating_a_listing_clears_a_cached_miss_for_its_id(client: httpx.AsyncClient) -> None:
    assert (await client.get("/listings/1")).status_code == 404  # cached as missing
    listing = await create(client)
    assert listing["id"] == 1
    assert (await client.get("/listings/1")).status_code == 200


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1.5", "99999999999999999999999", "%E2%82%AC", "1e3"])
async def test_ids_that_cannot_exist_are_404_never_500(client: httpx.AsyncClient, raw: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"/listings/{raw}", json={"title": "x"})
        assert response.status_code == 404, (method, raw, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_patch_and_delete_of_unknown_listing_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.patch("/listings/77", json={"title": "x"})).status_code == 404
    assert (await client.delete("/listings/77")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BIKE, "title": ""}, "title"),
        ({**BIKE, "title": "x" * 201}, "title"),
        ({**BIKE, "description": "x" * 5001}, "description"),
        ({**BIKE, "price": "-1"}, "price"),
        ({**BIKE, "price": "1.234"}, "price"),
        ({**BIKE, "price": "abc"}, "price"),
        ({**BIKE, "price": "NaN"}, "price"),
        ({**BIKE, "price": [1]}, "price"),
        ({**BIKE, "currency": "XYZ"}, "currency"),
        ({**BIKE, "city": 5}, "city"),
        ({**BIKE, "owner_id": "someone"}, "owner_id"),
        ({"title": "x", "price": "1"}, "city"),
    ],
)
async def test_invalid_bodies_are_422_with_field_errors(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/listings", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert field in {error["field"] for error in problem["errors"]}


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe"])
async def test_malformed_bodies_are_422_problems(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/listings", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_empty_or_null_patch_is_422(client: httpx.AsyncClient) -> None:
    listing = await create(client)
    assert (await client.patch(f"/listings/{listing['id']}", json={})).status_code == 422
    assert (await client.patch(f"/listings/{listing['id']}", json={"title": None})).status_code == 422
    assert (await client.patch(f"/listings/{listing['id']}", json={"color": "red"})).status_code == 422


async def test_oversize_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/listings", json={**BIKE, "description": "x" * 70_000})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_search_filters_and_cursor_pagination(client: httpx.AsyncClient) -> None:
    await create(client, title="Kırmızı bisiklet", price="100", city="Ankara")
    await create(client, title="Masa", description="Ahşap, büyük BISIKLET rafı", price="250.00", city="Ankara")
    await create(client, title="Sandalye", price="75.5", city="İzmir")
    await create(client, title="Dolap 100%_off", price="900", city="Ankara")

    everything = (await client.get("/listings")).json()
    assert [i["title"] for i in everything["items"]] == ["Dolap 100%_off", "Sandalye", "Masa", "Kırmızı bisiklet"]
    assert everything["next_cursor"] is None

    ankara = (await client.get("/listings", params={"city": "Ankara"})).json()["items"]
    assert {i["title"] for i in ankara} == {"Kırmızı bisiklet", "Masa", "Dolap 100%_off"}
    priced = (await client.get("/listings", params={"min_price": "75.50", "max_price": "250"})).json()["items"]
    assert [i["title"] for i in priced] == ["Sandalye", "Masa", "Kırmızı bisiklet"]
    found = (await client.get("/listings", params={"q": "bisiklet"})).json()["items"]
    assert [i["title"] for i in found] == ["Masa", "Kırmızı bisiklet"]
    literal = (await client.get("/listings", params={"q": "%_"})).json()["items"]
    assert [i["title"] for i in literal] == ["Dolap 100%_off"]

    seen, cursor = [], None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/listings", params=params)).json()
        seen += [item["title"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["title"] for i in everything["items"]]


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"min_price": "-5"}, {"max_price": "abc"},
     {"cursor": "garbage!"}, {"cursor": "eyJhZnRlciI6LTF9"}, {"q": "x" * 201}],
)  # fmt: skip
async def test_bad_query_parameters_are_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/listings", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


async def test_sql_and_script_like_text_is_stored_and_returned_verbatim(client: httpx.AsyncClient) -> None:
    nasty = "'; DROP TABLE listings; -- <script>alert(1)</script>"
    listing = await create(client, title=nasty, city="Robert'); --")
    assert (await client.get(f"/listings/{listing['id']}")).json()["title"] == nasty
    found = (await client.get("/listings", params={"q": "drop table", "city": "Robert'); --"})).json()["items"]
    assert [i["id"] for i in found] == [listing["id"]]
    assert (await client.get("/listings")).status_code == 200


async def test_a_hundred_concurrent_cold_reads_cost_one_database_load(client: httpx.AsyncClient) -> None:
    listing = await create(client)
    before = metric((await client.get("/metrics")).text, "kapi_cache_events_total", event="loads")

    responses = await asyncio.gather(*(client.get(f"/listings/{listing['id']}") for _ in range(100)))

    assert all(r.status_code == 200 and r.json() == listing for r in responses)
    after = metric((await client.get("/metrics")).text, "kapi_cache_events_total", event="loads")
    assert after - before == 1


@pytest.mark.parametrize("auth_fail_open", [False, True])
async def test_reads_fail_open_to_the_database_when_redis_is_down(
    own_redis_server: RedisServer, tmp_path: Any, auth_fail_open: bool
) -> None:
    app = create_app(make_settings(own_redis_server.url, tmp_path, auth_fail_open=auth_fail_open))
    async with serve(app) as client:
        headers = bearer(await login(client))
        listing = (await client.post("/listings", json=BIKE, headers=headers)).json()
        assert (await client.get(f"/listings/{listing['id']}")).headers["x-cache"] == "MISS"
        own_redis_server.kill()

        for _ in range(10):
            response = await client.get(f"/listings/{listing['id']}")
            assert (response.status_code, response.headers["x-cache"]) == (200, "MISS")
            assert response.json() == listing
        assert (await client.get("/listings")).status_code == 200

        updated = await client.patch(f"/listings/{listing['id']}", json={"price": "5"}, headers=headers)
        if auth_fail_open:  # the token is trusted on its signature alone; the write commits
            assert updated.status_code == 200
            assert (await client.get(f"/listings/{listing['id']}")).json()["price"] == "5.00"
        else:  # a token cannot be checked for revocation: refused, nothing written
            assert updated.status_code == 503 and "retry-after" in updated.headers
            assert (await client.get(f"/listings/{listing['id']}")).json()["price"] == "1250.50"


async def test_head_on_a_public_get_route_is_served_with_its_headers_and_no_body(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    listing = await create(client)
    got = await anon.get(f"/listings/{listing['id']}")
    head = await anon.head(f"/listings/{listing['id']}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["x-cache"] == "HIT"
    # One budget for GET and HEAD: the same policy, counting down together.
    assert int(head.headers["ratelimit-remaining"]) == int(got.headers["ratelimit-remaining"]) - 1
    assert (await anon.head("/listings")).status_code == 200


async def test_405_lists_every_method_the_path_serves(client: httpx.AsyncClient) -> None:
    for path, allowed in (("/listings", "GET, HEAD, POST"), ("/listings/1", "DELETE, GET, HEAD, PATCH")):
        for method in ("PUT", "OPTIONS"):
            response = await client.request(method, path)
            assert response.status_code == 405
            assert response.headers["allow"] == allowed
            assert response.headers["content-type"] == "application/problem+json"


SISLI = {"title": "ŞİŞLİ merkezde 3+1 daire", "description": "Işıklı, güneşli", "price": "12500", "city": "İstanbul"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "ŞİŞLİ"}, 1),
        ({"q": "şişli"}, 1),
        ({"q": "Şişli"}, 1),
        ({"q": "sisli"}, 1),  # typed on an English keyboard
        ({"q": "SISLI"}, 1),
        ({"q": "ışıklı"}, 1),
        ({"q": "IŞIKLI"}, 1),
        ({"q": "isikli"}, 1),
        ({"q": "DAİRE"}, 1),
        ({"q": "daıre"}, 1),
        ({"q": "air"}, 1),  # an infix
        ({"q": "3+1"}, 1),
        ({"q": "güneşli"}, 1),
        ({"q": "GUNESLI"}, 1),
        ({"q": "merkezde 3+1"}, 1),  # two words as they stand
        ({"q": "daire ışıklı"}, 0),  # not across the title and the description
        ({"q": "ev"}, 0),
        ({"q": "ŞL"}, 1),  # shorter than a trigram: the 1-2 character index
        ({"q": "şi"}, 2),  # "Bisiklet" has it too
        ({"q": "I"}, 2),
        ({"q": "+"}, 1),
        ({"city": "istanbul"}, 1),
        ({"city": "ISTANBUL"}, 1),
        ({"city": "İstanbul"}, 1),
        ({"city": "Istanbul"}, 1),
        ({"city": "istan"}, 0),  # the whole value, not a part
        ({"city": "istanbul", "q": "sisli", "min_price": "12500", "max_price": "12500"}, 1),
        ({"city": "ankara", "q": "sisli"}, 0),
    ],
)
async def test_turkish_text_is_found_the_way_people_type_it(
    client: httpx.AsyncClient, params: dict[str, str], expected: int
) -> None:
    await create(client, **SISLI)
    await create(client, title="Bisiklet", description="Az kullanılmış", price="900", city="Ankara")
    page = (await client.get("/listings", params=params)).json()
    assert len(page["items"]) == expected, page
    if expected:
        sisli = page["items"][-1]  # the older one
        assert sisli["title"] == "ŞİŞLİ merkezde 3+1 daire" and sisli["city"] == "İstanbul"  # shown as written


@pytest.mark.parametrize(
    "q", ['"', "*", "NEAR", "OR", "-", ":", "%", "_", 'a" OR "b', "NEAR(a b)", "x*", "a:b", "50%", "a_b", "\\"]
)
async def test_search_syntax_in_a_query_is_text(client: httpx.AsyncClient, q: str) -> None:
    await create(client, title=f"ilan {q} sonu", description="", price="1", city="Ankara")
    await create(client, title="başka bir ilan", description="OR NEAR", price="1", city="Ankara")
    response = await client.get("/listings", params={"q": q})
    assert response.status_code == 200, response.text
    titles = [item["title"] for item in response.json()["items"]]
    stored = {
        "başka bir ilan": search.document("başka bir ilan", "OR NEAR"),
        f"ilan {q} sonu": search.document(f"ilan {q} sonu", ""),
    }
    assert titles == [title for title, doc in stored.items() if search.fold(q) in doc]  # newest first


async def test_search_pages_newest_first_through_the_index(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, title=f"Daire no {i}", description="deniz manzaralı"))["id"] for i in range(7)]
    await create(client, title="Araba", description="az yakar")
    seen, cursor = [], None
    for q in ("manzara", "da"):
        seen, cursor = [], None
        while True:
            params = {"q": q, "limit": "3", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/listings", params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True), q


async def test_edits_and_deletes_keep_the_index_in_step(client: httpx.AsyncClient) -> None:
    listing = await create(client, title="Kırmızı bisiklet", description="")
    assert len((await client.get("/listings", params={"q": "kirmizi"})).json()["items"]) == 1
    await client.patch(f"/listings/{listing['id']}", json={"title": "Mavi bisiklet", "city": "İzmir"})
    assert (await client.get("/listings", params={"q": "kirmizi"})).json()["items"] == []
    assert len((await client.get("/listings", params={"q": "mavi", "city": "izmir"})).json()["items"]) == 1
    assert len((await client.get("/listings", params={"q": "ma"})).json()["items"]) == 1
    await client.delete(f"/listings/{listing['id']}")
    for q in ("mavi", "ma", "bisiklet"):
        assert (await client.get("/listings", params={"q": q})).json()["items"] == []


async def test_search_pages_are_cached_and_any_write_makes_them_all_stale(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    first = await create(client, title="Deniz manzaralı daire", city="İzmir")
    for params in ({"q": "deniz"}, {"city": "izmir"}, {}):
        assert (await client.get("/listings", params=params)).headers["x-cache"] == "MISS"
        assert (await client.get("/listings", params=params)).headers["x-cache"] == "HIT"
    # The key is the normalised query: "DENİZ" is the page of "deniz".
    again = await client.get("/listings", params={"q": "DENİZ"})
    assert again.headers["x-cache"] == "HIT" and [i["id"] for i in again.json()["items"]] == [first["id"]]
    second = await create(client, title="Denize sıfır yazlık", city="İzmir")  # one write...
    for params in ({"q": "deniz"}, {"city": "izmir"}, {}):  # ...and every page is stale at once
        page = await client.get("/listings", params=params)
        assert page.headers["x-cache"] == "MISS" and page.json()["items"][0]["id"] == second["id"]
    await client.patch(f"/listings/{second['id']}", json={"title": "Yazlık"})
    assert [i["id"] for i in (await client.get("/listings", params={"q": "deniz"})).json()["items"]] == [first["id"]]
    await client.delete(f"/listings/{first['id']}")
    assert (await client.get("/listings", params={"q": "deniz"})).json()["items"] == []
    assert 0 < await redis.ttl(f"listings:search:{Listings.digest(ListingQuery(q='deniz'))}") <= 30
    assert int(await redis.get("generation:listings")) == 4


async def test_concurrent_identical_searches_cost_one_database_query(client: httpx.AsyncClient, app: Any) -> None:
    await create(client, title="Koltuk takımı")
    store = app.state.kapi.listings.store.__class__
    calls = 0
    original = store.search

    async def counting(self: Any, query: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return await original(self, query)

    store.search = counting
    try:
        pages = await asyncio.gather(*(client.get("/listings", params={"q": "koltuk"}) for _ in range(50)))
    finally:
        store.search = original
    assert {p.status_code for p in pages} == {200} and calls == 1


async def test_concurrent_writes_all_succeed(client: httpx.AsyncClient) -> None:
    """40 creates at once, then 40 edits and 40 deletes at once: every one answered, none a 500 (on
    SQLite each waits its turn for the write lock; before, most failed with "database is locked")."""
    created = await asyncio.gather(*(client.post("/listings", json={**BIKE, "title": f"Daire {i}"}) for i in range(40)))
    assert [r.status_code for r in created] == [201] * 40
    ids = [r.json()["id"] for r in created]
    assert len(set(ids)) == 40
    edited = await asyncio.gather(*(client.patch(f"/listings/{i}", json={"title": f"Ev {i}"}) for i in ids))
    assert [r.status_code for r in edited] == [200] * 40
    found = await client.get("/listings", params={"q": "ev", "limit": 100})
    assert {item["id"] for item in found.json()["items"]} == set(ids)
    deleted = await asyncio.gather(*(client.delete(f"/listings/{i}") for i in ids))
    assert [r.status_code for r in deleted] == [204] * 40
    assert (await client.get("/listings", params={"q": "ev"})).json()["items"] == []
