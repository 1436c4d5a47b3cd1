"""Listings in the database: the source of truth behind the cache, and the search query."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from databases import Database
from pydantic import BaseModel, ConfigDict, Field

from service.schemas import TEXT_PATTERN, ListingCreate, ListingUpdate, Price

Listing = dict[str, Any]

_COLUMNS = "id, title, description, price_minor, currency, city, owner_id, created_at, updated_at"
_MAX_ID = 2**63 - 1


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _search_text(title: str, description: str) -> str:
    return f"{title}\n{description}".casefold()


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


class ListingStore:
    """Listings in the database: the source of truth behind the cache."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, listing_id: int) -> Listing | None:
        row = await self.database.fetch_one(f"SELECT {_COLUMNS} FROM listings WHERE id = :id", {"id": listing_id})
        return None if row is None else _to_listing(row)

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
            "search": _search_text(data.title, data.description),
        }
        row = await self.database.fetch_one(
            "INSERT INTO listings (title, description, price_minor, currency, city, owner_id, created_at, "
            "updated_at, search) VALUES (:title, :description, :price_minor, :currency, :city, :owner_id, "
            f":created_at, :updated_at, :search) RETURNING {_COLUMNS}",
            values,
        )
        return _to_listing(row)

    async def update(self, listing_id: int, changes: ListingUpdate) -> Listing | None:
        """Apply the fields given. The transaction's first statement is the write, so concurrent
        writers queue on the database's lock instead of failing to upgrade a read lock (SQLite's
        "database is locked"); the search text is then derived from the row as written."""
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
        async with self.database.transaction():
            row = await self.database.fetch_one(
                "UPDATE listings SET title = COALESCE(:title, title), "
                "description = COALESCE(:description, description), "
                "price_minor = COALESCE(:price_minor, price_minor), currency = COALESCE(:currency, currency), "
                "city = COALESCE(:city, city), updated_at = :updated_at "
                f"WHERE id = :id RETURNING {_COLUMNS}",
                values,
            )
            if row is None:
                return None
            listing = _to_listing(row)
            await self.database.execute(
                "UPDATE listings SET search = :search WHERE id = :id",
                {"id": listing_id, "search": _search_text(listing["title"], listing["description"])},
            )
        return listing

    async def delete(self, listing_id: int) -> bool:
        row = await self.database.fetch_one("DELETE FROM listings WHERE id = :id RETURNING id", {"id": listing_id})
        return row is not None

    async def search(self, query: ListingQuery) -> tuple[list[Listing], str | None]:
        clauses: list[str] = []
        values: dict[str, Any] = {"limit": query.limit + 1}
        if query.city is not None:
            clauses.append("city = :city")
            values["city"] = query.city
        if query.min_price is not None:
            clauses.append("price_minor >= :min_price")
            values["min_price"] = _minor(query.min_price)
        if query.max_price is not None:
            clauses.append("price_minor <= :max_price")
            values["max_price"] = _minor(query.max_price)
        if query.q:
            escaped = query.q.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("search LIKE :q ESCAPE '\\'")
            values["q"] = f"%{escaped}%"
        if query.after_id is not None:
            clauses.append("id < :after_id")
            values["after_id"] = query.after_id
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.database.fetch_all(
            f"SELECT {_COLUMNS} FROM listings {where} ORDER BY id DESC LIMIT :limit", values
        )
        items = [_to_listing(row) for row in rows[: query.limit]]
        next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > query.limit else None
        return items, next_cursor


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
