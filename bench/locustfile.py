"""Realistic load for a running Kapı deployment (Locust).

Users sign in with the test phone numbers (``OTP_TEST_NUMBERS`` on the server, e.g.
``+905550000001:123456,+905550000002:123456``), browse and search listings, create and update
their own, run into their rate limit, and log out. Run headless for a fixed time:

    locust -f bench/locustfile.py --headless -u 20 -r 5 -t 60s --host http://127.0.0.1:8000

Set ``KAPI_TEST_NUMBERS`` to the same ``phone:code`` list the server has (default: the two above).
Only point it at deployments you run: it creates listings and burns rate-limit budgets.
"""

from __future__ import annotations

import itertools
import os
import random

from locust import HttpUser, between, events, task

NUMBERS = [
    tuple(item.split(":", 1))
    for item in os.environ.get("KAPI_TEST_NUMBERS", "+905550000001:123456,+905550000002:123456").split(",")
]
_next_number = itertools.cycle(NUMBERS)
CITIES = ["İstanbul", "Ankara", "İzmir", "Bursa", "Antalya"]
WORDS = ["bisiklet", "masa", "sandalye", "kitaplık", "lamba", "dolap", "halı"]


class MarketplaceUser(HttpUser):
    """One person: signs in, browses, searches, sells a little, now and then hammers one page."""

    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.headers: dict[str, str] = {}
        self.mine: list[int] = []
        phone, code = next(_next_number)
        for _ in range(5):  # users sharing a test number can consume each other's code: ask again
            with self.client.post("/auth/otp", json={"phone": phone}, name="/auth/otp", catch_response=True) as sent:
                if sent.status_code == 429:  # 5 codes per number per hour: browse signed out
                    sent.success()
                    return
            with self.client.post("/auth/login/phone", json={"phone": phone, "code": code},
                                  name="/auth/login/phone", catch_response=True) as response:  # fmt: skip
                if response.status_code == 200:
                    self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
                    return
                if response.status_code in (400, 429):
                    response.success()  # expected when numbers are shared or the sign-in limit bites

    def on_stop(self) -> None:
        if self.headers:
            self.client.post("/auth/logout", headers=self.headers, name="/auth/logout")

    @task(10)
    def browse(self) -> None:
        page = self.client.get("/listings", params={"limit": 20}, headers=self.headers, name="/listings").json()
        items = page.get("items", []) if isinstance(page, dict) else []
        for item in random.sample(items, min(3, len(items))):
            self.client.get(f"/listings/{item['id']}", headers=self.headers, name="/listings/{listing_id}")

    @task(4)
    def search(self) -> None:
        params = {"q": random.choice(WORDS), "city": random.choice(CITIES), "max_price": random.choice([500, 5000])}
        self.client.get("/listings", params=params, headers=self.headers, name="/listings?q")

    @task(2)
    def sell(self) -> None:
        if not self.headers:
            return
        body = {"title": f"{random.choice(WORDS)} {random.randint(1, 999)}", "price": str(random.randint(10, 9000)),
                "city": random.choice(CITIES), "description": "Locust load test"}  # fmt: skip
        response = self.client.post("/listings", json=body, headers=self.headers, name="/listings [POST]")
        if response.status_code == 201:
            self.mine.append(response.json()["id"])

    @task(2)
    def update_own(self) -> None:
        if self.mine:
            listing_id = random.choice(self.mine)
            self.client.patch(f"/listings/{listing_id}", json={"price": str(random.randint(10, 9000))},
                              headers=self.headers, name="/listings/{listing_id} [PATCH]")  # fmt: skip

    @task(1)
    def hit_the_rate_limit(self) -> None:
        """Hammer one endpoint until the server says 429 (counted as expected, not as a failure)."""
        if not self.headers:
            return
        for _ in range(150):
            with self.client.get("/auth/session", headers=self.headers, name="/auth/session (burst)",
                                 catch_response=True) as response:  # fmt: skip
                if response.status_code == 429:
                    response.success()
                    break


@events.quitting.add_listener
def _report(environment, **kwargs) -> None:  # type: ignore[no-untyped-def]
    stats = environment.stats.total
    print(f"kapi locust: {stats.num_requests} requests, {stats.num_failures} failures, "
          f"median {stats.median_response_time} ms, p99 {stats.get_response_time_percentile(0.99)} ms")  # fmt: skip
    for entry in sorted(environment.stats.entries.values(), key=lambda e: e.name):
        print(f"kapi locust: {entry.method} {entry.name}: {entry.num_requests} requests, {entry.num_failures} failures")
