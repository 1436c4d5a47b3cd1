"""Framework helpers, each importing its framework only when used:

- ``gateway.integrations.fastapi``: ``CurrentUser``/``current_user`` (a ``Security`` dependency, so
  OpenAPI shows the lock on protected routes) and ``OptionalUser``;
- ``gateway.integrations.django``: ``patterns_from_urlconf`` (route templates from a URLconf) and
  ``token_user`` (the caller from a Django request).

Starlette needs nothing more than the middleware: ``request.user`` and ``@requires`` work as with
Starlette's own ``AuthenticationMiddleware``, and ``gateway.limit`` declares a route's limits.
"""
