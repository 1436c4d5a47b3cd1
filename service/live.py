"""The ``/listings/events`` handlers: live listing changes (``service.feed``) as Server-Sent Events
(``GET`` with ``Accept: text/event-stream``) and as a WebSocket, on the same path.

SSE: each change is ``id: <event id>`` and ``data: {"type", "id", "listing"}`` (the default event
type, so ``EventSource.onmessage`` sees every change); a ``reset`` is ``event: reset`` with ``data:
{"type": "reset", "reason"}``; a comment ``: ping`` goes out every ``FEED_HEARTBEAT`` seconds without
one; a feed the server closes ends with ``event: close`` and ``data: {"type": "close", "reason"}``
(``EventSource`` then reconnects with ``Last-Event-ID``).

WebSocket: one text message per event, the same JSON with its id in ``event_id``; closed with 1013 when
the client fell behind, 1001 when the server shuts down (the reason says so); resume with the query
parameter ``last_event_id``.

Both take ``city`` (the whole value, Turkish-aware) and ``last_event_id`` (SSE: the ``Last-Event-ID``
header wins). The gateway checks their token before they get here.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import ProblemResponse, RedisUnavailable
from gateway.problem import answer
from gateway.types import Receive, Scope, Send
from service.feed import FELL_BEHIND, SHUTTING_DOWN, Closed, Feed, Subscription
from service.responses import validation_problem
from service.schemas import TEXT_PATTERN, field_errors
from service.state import Kapi

EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
EVENT_STREAM = "text/event-stream"
_CLIENT_LEFT = "the client left"
_UNAVAILABLE = "Resuming the feed needs Redis, which cannot be reached; try again shortly."


class FeedQuery(BaseModel):
    """Query parameters of ``/listings/events``."""

    model_config = ConfigDict(extra="ignore", regex_engine="python-re")

    city: str | None = Field(None, max_length=100, pattern=TEXT_PATTERN)
    last_event_id: str | None = Field(None, max_length=41, pattern=EVENT_ID_PATTERN)


def accepts_event_stream(accept: str) -> bool:
    """Whether an ``Accept`` header names ``text/event-stream`` (not merely ``*/*``: a client that
    did not ask for a stream that never ends does not get one)."""
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        refused = any(_is_q_zero(param) for param in params)
        if media.lower() == EVENT_STREAM and not refused:
            return True
    return False


def _is_q_zero(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value.strip()) == 0
    except ValueError:
        return False


async def _subscribe(feed: Feed, query: FeedQuery, after: str | None) -> Subscription | Response:
    try:
        return await feed.subscribe(city=query.city, after=after)
    except ValueError as exc:
        return validation_problem([{"field": "last_event_id", "message": str(exc)}], "The event id is not valid.")
    except RedisUnavailable:
        return ProblemResponse(503, _UNAVAILABLE, headers={"Retry-After": "1"})


def _query(request_or_socket: Request | WebSocket) -> FeedQuery | Response:
    try:
        return FeedQuery.model_validate(dict(request_or_socket.query_params))
    except ValidationError as exc:
        return validation_problem(field_errors(exc), "The query parameters are not valid.")


async def listing_events(request: Request) -> Response:
    """Live listing changes as Server-Sent Events."""
    query = _query(request)
    if isinstance(query, Response):
        return query
    if not accepts_event_stream(request.headers.get("accept", "")):
        return ProblemResponse(
            406, "This is an event stream: ask with Accept: text/event-stream, or open a WebSocket here."
        )
    header = request.headers.get("last-event-id")
    if header is not None and not header.strip():
        header = None  # (EventSource sends an empty one when it saw no id)
    subscription = await _subscribe(Kapi.of(request).feed, query, header.strip() if header else query.last_event_id)
    if isinstance(subscription, Response):
        return subscription
    return EventStream(subscription, heartbeat=Kapi.of(request).settings.feed_heartbeat)


class EventStream(Response):
    """An open feed sent as ``text/event-stream`` until the client leaves or the server closes it."""

    def __init__(self, subscription: Subscription, *, heartbeat: float) -> None:
        super().__init__(
            status_code=200,
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # (nginx: do not buffer it)
        )
        del self.headers["content-length"]
        self.subscription = subscription
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self.subscription
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._write(send))
                tasks.create_task(_until_disconnect(receive, writer, subscription))
        except* OSError:
            pass  # the client went away mid-write
        finally:
            subscription.close(SHUTTING_DOWN)

    async def _write(self, send: Send) -> None:
        subscription = self.subscription
        while True:
            try:
                event = await subscription.next(idle=self.heartbeat)
            except (Closed, RedisUnavailable) as exc:
                reason = exc.reason if isinstance(exc, Closed) else _UNAVAILABLE
                if reason == _CLIENT_LEFT:
                    return
                final = b"event: close\ndata: " + orjson.dumps({"type": "close", "reason": reason}) + b"\n\n"
                await send({"type": "http.response.body", "body": final, "more_body": False})
                return
            chunk = b": ping\n\n" if event is None else event.sse
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnect(receive: Receive, writer: asyncio.Task[None], subscription: Subscription) -> None:
    """Wait for the client to leave (then stop the writer), or for the writer to finish."""
    waiting = asyncio.ensure_future(receive())
    try:
        while not writer.done():
            done, _ = await asyncio.wait({waiting, writer}, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                if waiting.result()["type"] == "http.disconnect":
                    _stop(writer, subscription)
                    return
                waiting = asyncio.ensure_future(receive())
    finally:
        waiting.cancel()


async def listing_events_socket(websocket: WebSocket) -> None:
    """Live listing changes as a WebSocket."""
    query = _query(websocket)
    kapi: Kapi = websocket.app.state.kapi
    subscription = query if isinstance(query, Response) else await _subscribe(kapi.feed, query, query.last_event_id)
    if isinstance(subscription, Response):
        assert isinstance(subscription, ProblemResponse)  # every refusal here is a problem
        await answer(subscription, websocket.scope, websocket.receive, websocket.send)
        return
    try:
        await websocket.accept()
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(_send_events(websocket, subscription))
            tasks.create_task(_until_closed(websocket, writer, subscription))
    except* (WebSocketDisconnect, OSError):
        pass
    finally:
        subscription.close(SHUTTING_DOWN)


async def _send_events(websocket: WebSocket, subscription: Subscription) -> None:
    while True:
        try:
            event = await subscription.next()
        except (Closed, RedisUnavailable) as exc:
            reason = exc.reason if isinstance(exc, Closed) else _UNAVAILABLE
            if reason == _CLIENT_LEFT:
                return
            code = 1013 if reason == FELL_BEHIND else 1001 if reason == SHUTTING_DOWN else 1011
            await websocket.close(code, reason)
            return
        assert event is not None
        await websocket.send_text(event.ws)


async def _until_closed(websocket: WebSocket, writer: asyncio.Task[None], subscription: Subscription) -> None:
    """Read (and ignore) what the client sends until it closes; then stop the writer."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while not writer.done():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    _stop(writer, subscription)


def _stop(writer: asyncio.Task[None], subscription: Subscription) -> None:
    """The client left: end its feed (the writer stops at its next event even if the cancel is lost,
    as one landing when a Redis connection is made can be on Python 3.11) and cancel the writer."""
    subscription.close(_CLIENT_LEFT)
    writer.cancel()


async def other_method(request: Request) -> Response:
    """``/listings/events`` with a method it does not serve: 405 (else ``PATCH``/``DELETE
    /listings/{listing_id}`` would take it, and answer that there is no listing "events")."""
    return ProblemResponse(405, f"{request.method} is not served here.", headers={"Allow": "GET, HEAD"})


#: Before the listing routes (whose /listings/{listing_id} would match this path).
routes = [
    Route("/listings/events", listing_events, methods=["GET"], name="listing_events"),
    Route(
        "/listings/events",
        other_method,
        methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        name="listing_events_other_methods",
        include_in_schema=False,
    ),
    WebSocketRoute("/listings/events", listing_events_socket, name="listing_events_socket"),
]
