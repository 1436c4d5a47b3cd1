"""Django (ASGI): the gateway in front of ``get_asgi_application()``.

Django's URLconf is not Starlette routes, so the gateway takes route templates as ``patterns``;
``patterns_from_urlconf`` derives them from ``path()`` entries (``items/<int:item_id>/`` becomes
``/items/{item_id:int}/``, for any method: Django views do not declare their methods). ``re_path``
entries cannot be turned into templates: they are left out (name them in ``patterns`` yourself, or
they count as ``unmatched``). The caller is in ``request.scope["user"]`` (``token_user``); Django's
own ``request.user`` comes from its session middleware and is not touched.
"""

from __future__ import annotations

from typing import Any

from gateway.auth import TokenUser

#: Django path converters and the Starlette convertor that matches the same text.
_CONVERTERS = {"int": "int", "str": "str", "slug": "str", "uuid": "uuid", "path": "path"}


def patterns_from_urlconf(urlconf: Any = None) -> list[str]:
    """Route templates (``"/items/{item_id:int}/"``) for every ``path()`` in the URLconf, includes
    followed."""
    from django.urls import URLPattern, URLResolver, get_resolver
    from django.urls.resolvers import RoutePattern

    found: list[str] = []

    def walk(entries: Any, prefix: str) -> None:
        for entry in entries:
            pattern = entry.pattern
            if not isinstance(pattern, RoutePattern):
                continue  # re_path: no template to derive
            route = prefix + _template(str(pattern))
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern):
                found.append("/" + route)

    walk(get_resolver(urlconf).url_patterns, "")
    return found


def _template(route: str) -> str:
    out, rest = "", route
    while "<" in rest:
        head, _, tail = rest.partition("<")
        spec, _, rest = tail.partition(">")
        converter, _, name = spec.rpartition(":")
        out += head + "{" + name + (":" + _CONVERTERS.get(converter or "str", "str") if converter else "") + "}"
    return out + rest


def token_user(request: Any) -> TokenUser | None:
    """The caller the gateway authenticated for this Django request, or None."""
    user = request.scope.get("user")
    return user if isinstance(user, TokenUser) else None


__all__ = ["patterns_from_urlconf", "token_user"]
