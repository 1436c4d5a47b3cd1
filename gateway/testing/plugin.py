"""The pytest plugin that installing the package registers (the ``pytest11`` entry point ``kapi``).

On its own it adds one configuration option, ``kapi_fixtures``, and nothing else: a suite that does
not set it gets no fixtures from Kapı (its own ``redis_server`` or ``redis`` fixtures are untouched)
and needs no async test plugin. ``kapi_fixtures = true`` in the pytest configuration registers the
fixtures of ``gateway.testing.fixtures`` (a real ``redis-server``: ``kapi_redis_server``,
``kapi_own_redis_server``, ``kapi_redis``); that module says the other ways to opt in.
``pytest -p no:kapi`` turns this plugin off altogether.
"""

from __future__ import annotations

import pytest

FIXTURES = "gateway.testing.fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "kapi_fixtures",
        type="bool",
        default=False,
        help="register Kapı's redis-server fixtures (kapi_redis_server, kapi_own_redis_server, kapi_redis)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getini("kapi_fixtures"):
        config.pluginmanager.import_plugin(FIXTURES)  # once, however else the suite also opted in
