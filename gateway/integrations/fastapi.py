"""FastAPI: the authenticated caller as a dependency, with the OpenAPI "lock" on the routes using it.

The gateway middleware (``GatewayMiddleware`` or ``AuthMiddleware``, given ``routes=app.routes``)
authenticates every request before FastAPI sees it; these dependencies read what it found, so they
cost nothing. ``Security(HTTPBearer)`` is what makes FastAPI document the bearer scheme::

    from gateway.integrations.fastapi import CurrentUser

    @app.get("/me")
    async def me(user: CurrentUser) -> dict:
        return {"id": user.identity}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import TokenUser

#: The bearer scheme as OpenAPI shows it. ``auto_error=False``: the gateway, not FastAPI, checks tokens.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="JWT")


async def current_user(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None
) -> TokenUser:
    """The caller the gateway authenticated; 401 if the route was reached without a token (it was
    listed as public, or no gateway middleware runs)."""
    user = request.scope.get("user")
    if isinstance(user, TokenUser):
        return user
    raise HTTPException(401, "A bearer token is required.", headers={"WWW-Authenticate": 'Bearer realm="kapi"'})


async def optional_user(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None
) -> TokenUser | None:
    """The authenticated caller, or None for an anonymous one on a public route."""
    user = request.scope.get("user")
    return user if isinstance(user, TokenUser) else None


#: A route parameter typed ``user: CurrentUser`` gets the authenticated ``TokenUser`` (401 without
#: one), and OpenAPI shows the route as protected.
CurrentUser = Annotated[TokenUser, Depends(current_user)]
#: ``user: OptionalUser`` gets the ``TokenUser``, or ``None`` on a public route called without a token.
OptionalUser = Annotated[TokenUser | None, Depends(optional_user)]

__all__ = ["CurrentUser", "OptionalUser", "bearer_scheme", "current_user", "optional_user"]
