"""Bearer-token authentication for any ASGI app: ``AuthRules`` (what is public), ``Authenticator``
(reading and verifying the token, locally) and ``AuthMiddleware``.

It sets ``scope["user"]`` and ``scope["auth"]`` as Starlette's ``AuthenticationMiddleware`` does,
so ``request.user``, ``request.auth`` and ``starlette.authentication.requires`` work unchanged.
Errors follow RFC 6750: no ``error`` when no token was sent, ``error="invalid_token"`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.routing import BaseRoute

from gateway.blacklist import TokenBlacklist, Verdict
from gateway.errors import RedisUnavailable
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.problem import ProblemResponse, answer
from gateway.routing import EndpointResolver, EndpointSet, is_preflight, resolver_for
from gateway.streams import StreamGuard, serve_stream, serve_websocket
from gateway.tokens import Claims, InvalidToken, TokenVerifier
from gateway.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("gateway.auth")


class TokenUser(BaseUser):
    """The authenticated caller: ``identity`` is the token's ``sub``; all claims are kept."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        """Always true: a ``TokenUser`` exists only for a verified token."""
        return True

    @property
    def display_name(self) -> str:
        """The token's ``sub``."""
        return str(self.claims["sub"])

    @property
    def identity(self) -> str:
        """The token's ``sub``: the user id your app keys its data by."""
        return str(self.claims["sub"])


class Anonymous(UnauthenticatedUser):
    """A caller without a token (on a public endpoint)."""

    identity = ""


def credentials_for(claims: Claims) -> AuthCredentials:
    """``authenticated`` plus the token's space-separated ``scope`` claim, if any."""
    scopes = ["authenticated"]
    extra = claims.get("scope")
    if isinstance(extra, str):
        scopes += extra.split()
    return AuthCredentials(scopes)


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def challenge(error_description: str | None, detail: str, *, realm: str = "kapi") -> ProblemResponse:
    """A 401 problem with its RFC 6750 challenge: no ``error`` when no token was sent,
    ``error="invalid_token"`` with the description otherwise."""
    header = f'Bearer realm="{_quote(realm)}"'
    if error_description is not None:
        header += f', error="invalid_token", error_description="{_quote(error_description)}"'
    return ProblemResponse(401, detail, headers={"WWW-Authenticate": header})


def bearer_token(scope: Scope, *, max_header_size: int = 8192) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, None without one, or
    ``InvalidToken`` for a malformed header (several headers, another scheme, spaces, non-ASCII). A
    WebSocket handshake without the header may carry it as a subprotocol, ``bearer.<token>``: a
    browser's ``new WebSocket(url, ["app", "bearer." + token])``, which cannot set headers, and never
    puts a token in a URL (``gateway.streams`` hides it from the app)."""
    values: list[bytes] = [value for name, value in scope["headers"] if name == b"authorization"]
    if not values:
        if scope["type"] == "websocket":
            return _subprotocol_token(scope, max_header_size)
        return None
    if len(values) > 1:
        raise InvalidToken("malformed", "Send one Authorization header, not several.")
    raw = values[0]
    if len(raw) > max_header_size:
        raise InvalidToken("too_long", "The Authorization header is too large.")
    scheme, _, token = raw.decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise InvalidToken("malformed", "Use the Bearer scheme: Authorization: Bearer <token>.")
    if not token or " " in token or not token.isascii():
        raise InvalidToken("malformed", "The bearer token is malformed.")
    return token


def _subprotocol_token(scope: Scope, max_size: int) -> str | None:
    carried: list[str] = [name for name in scope.get("subprotocols", ()) if name.startswith("bearer.")]
    if not carried:
        return None
    if len(carried) > 1:
        raise InvalidToken("malformed", "Offer one bearer subprotocol, not several.")
    token = carried[0][len("bearer.") :]
    if len(token) > max_size:
        raise InvalidToken("too_long", "The bearer subprotocol is too large.")
    if not token or not token.isascii():
        raise InvalidToken("malformed", "The bearer token is malformed.")
    return token


class AuthFailure(Exception):
    """Authentication refused the request; ``response`` is what to send, ``reason`` a metrics label."""

    def __init__(self, response: ProblemResponse, reason: str) -> None:
        self.response = response
        self.reason = reason


@dataclass(frozen=True)
class AuthRules:
    """What authentication asks of each endpoint.

    - ``public``: endpoints where a token is optional (``"GET /listings"``, ``"/health"`` for any
      method), or a predicate on the scope; a token that is sent must still be valid;
    - ``ignore_token``: endpoints that authenticate by other means (a refresh token in the body, a
      logout that accepts an already revoked token): their ``Authorization`` header is not read, so
      an expired token in it cannot block them;
    - ``fail_open``: when Redis cannot check a token for revocation, let signature-valid tokens
      through unchecked instead of answering 503;
    - ``realm``: the ``WWW-Authenticate`` realm; ``max_header_size``: the longest header read.
    """

    public: Iterable[str] | Callable[[Scope], bool] = ()
    ignore_token: Iterable[str] = ()
    fail_open: bool = False
    realm: str = "kapi"
    max_header_size: int = 8192

    def __post_init__(self) -> None:
        for name in ("public", "ignore_token"):
            if isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a list of endpoint strings, not one string: {getattr(self, name)!r}")


class Authenticator:
    """The local half of authentication (no Redis): reads and verifies the bearer token and applies
    ``AuthRules``. Endpoint names in the rules must match the resolver's routes (a start-up
    ``ValueError`` otherwise: a renamed route must not silently lose its rule); a request matching
    no route is treated as public, so the app can answer its 404."""

    def __init__(self, verifier: TokenVerifier, rules: AuthRules, resolver: EndpointResolver) -> None:
        self.verifier = verifier
        self.rules = rules
        self.resolver = resolver
        self.realm = rules.realm
        if not callable(rules.public):
            resolver.check("public", rules.public)
        resolver.check("ignore_token", rules.ignore_token)
        self._ignored = EndpointSet(rules.ignore_token)
        self._is_public = rules.public if callable(rules.public) else self._endpoint_check(EndpointSet(rules.public))

    def _endpoint_check(self, endpoints: EndpointSet) -> Callable[[Scope], bool]:
        routed = self.resolver.routed

        def is_public(scope: Scope) -> bool:
            return self.resolver.resolve(scope) in endpoints or (routed and not self.resolver.is_known(scope))

        return is_public

    async def authenticate(self, scope: Scope) -> Claims | None:
        """The verified claims, None for an anonymous caller on a public (or token-ignoring) route,
        or ``AuthFailure``. Local work only (no I/O on the hot path), but for a token naming a ``kid``
        its identity provider's key set has not fetched yet (``TokenVerifier.verify_fetching``)."""
        if (self._ignored.exact or self._ignored.any_method) and self.resolver.resolve(scope) in self._ignored:
            return None
        try:
            token = bearer_token(scope, max_header_size=self.rules.max_header_size)
        except InvalidToken as exc:
            raise self.invalid(exc.description, exc.reason) from None
        if token is None:
            if self._is_public(scope):
                return None
            raise AuthFailure(challenge(None, "A bearer token is required.", realm=self.realm), "missing")
        try:
            return await self.verifier.verify_fetching(token)
        except InvalidToken as exc:
            if exc.reason == "keys_unavailable":  # we cannot tell: the identity provider is away
                response = ProblemResponse(503, exc.description, headers={"Retry-After": "5"})
                raise AuthFailure(response, exc.reason) from None
            raise self.invalid(exc.description, exc.reason) from None

    def unchecked(self, exc: Exception) -> None:
        """Redis could not check a token: fail closed (``AuthFailure``, 503) unless ``fail_open``."""
        if self.rules.fail_open:
            logger.warning("revocation check skipped, Redis unavailable (%s); failing open", exc)
            return
        response = ProblemResponse(
            503,
            "The token cannot be checked for revocation right now; try again shortly.",
            headers={"Retry-After": "2"},
        )
        raise AuthFailure(response, "redis_unavailable")

    def apply(self, verdict: Verdict) -> None:
        """``AuthFailure`` for a revoked token."""
        if verdict is not Verdict.VALID:
            raise self.invalid(verdict.description, verdict.name.lower())

    def invalid(self, description: str, reason: str) -> AuthFailure:
        """The 401 refusal for a bad token: ``WWW-Authenticate`` with ``error="invalid_token"`` and
        ``description``; ``reason`` is what the events (metrics) are told."""
        return AuthFailure(challenge(description, description, realm=self.realm), reason)

    @staticmethod
    def set_user(scope: Scope, claims: Claims | None) -> None:
        """``scope["user"]`` and ``scope["auth"]``, where Starlette's ``AuthenticationMiddleware`` puts them."""
        if claims is None:
            scope["user"], scope["auth"] = Anonymous(), AuthCredentials()
        else:
            scope["user"], scope["auth"] = TokenUser(claims), credentials_for(claims)


def check_blacklist(verifier: TokenVerifier, blacklist: TokenBlacklist | None) -> None:
    """A blacklist that forgets sooner than its verifier accepts would let a revoked token pass again."""
    if blacklist is not None and (blacklist.leeway < verifier.leeway or blacklist.max_lifetime < verifier.max_lifetime):
        raise ValueError(
            "the blacklist's leeway and max_lifetime must be at least the verifier's, "
            "or a revocation could end while the token is still accepted"
        )


class AuthMiddleware:
    """Bearer JWT authentication with a Redis blacklist, for any ASGI app: ``verifier`` (a
    ``TokenVerifier``) checks each token, and the caller lands in ``scope["user"]`` (a ``TokenUser``,
    or an unauthenticated user on a public route). ``events`` hears each rejection. ``routes`` (a
    Starlette/FastAPI app's ``app.routes``) or ``patterns`` (``"GET /items/{item_id}"``) name the route
    templates that ``rules`` refer to (or ``resolver``, the app's one ``EndpointResolver``). With
    ``blacklist``, each token is checked for revocation in Redis (one round trip). CORS preflights
    pass through untouched. WebSocket handshakes are checked too, and with ``streams`` (a
    ``StreamGuard``) long-lived connections are closed once their token stops being valid (see
    ``GatewayMiddleware``). For authentication and rate limiting in one round trip, use
    ``gateway.GatewayMiddleware``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        blacklist: TokenBlacklist | None = None,
        rules: AuthRules | None = None,
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        resolver: EndpointResolver | None = None,
        events: GatewayEvents | None = None,
        streams: StreamGuard | None = None,
    ) -> None:
        check_blacklist(verifier, blacklist)
        self.app = app
        self.authenticator = Authenticator(verifier, rules or AuthRules(), resolver_for(resolver, routes, patterns))
        self.blacklist = blacklist
        self.events = events or NO_EVENTS
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or (kind == "http" and is_preflight(scope)):
            await self.app(scope, receive, send)
            return
        authenticator = self.authenticator
        try:
            claims = await authenticator.authenticate(scope)
            if claims is not None and self.blacklist is not None:
                try:
                    authenticator.apply(await self.blacklist.verdict(claims))
                except RedisUnavailable as exc:
                    authenticator.unchecked(exc)
        except AuthFailure as failure:
            self.events.token_rejected(failure.reason)
            await answer(failure.response, scope, receive, send)
            return
        authenticator.set_user(scope, claims)
        if kind == "websocket":
            await serve_websocket(self.app, scope, receive, send, claims=claims, guard=self.streams)
        elif self.streams is not None and claims is not None and scope["method"] == "GET":  # SSE is a GET
            await serve_stream(self.app, scope, receive, send, claims=claims, guard=self.streams)
        else:
            await self.app(scope, receive, send)
