"""Users, created on their first phone login."""

from __future__ import annotations

from databases import Database

from service.store import now_rfc3339


class UserStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def get_or_create(self, phone: str) -> str:
        """The user id (as a string, the tokens' ``sub``) for this E.164 phone number."""
        await self.database.execute(
            "INSERT INTO users (phone, created_at) VALUES (:phone, :created_at) ON CONFLICT (phone) DO NOTHING",
            {"phone": phone, "created_at": now_rfc3339()},
        )
        user_id = await self.database.fetch_val("SELECT id FROM users WHERE phone = :phone", {"phone": phone})
        return str(user_id)
