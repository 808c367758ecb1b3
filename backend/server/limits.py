"""Limits on what a client may hold: connections, time to send headers, time between body chunks,
and a declared body size refused before a byte of it is read.

Without them a client that sent headers or a body slowly held its connection (and a file
descriptor) forever: 100 such connections held 208 fds, and an upload declaring 10 GB was read up
to the 4 GB limit before it was refused.
- Headers: uvicorn has no timeout for a request's head (its keep-alive timer runs only between
  requests), so its httptools protocol is extended with one (`HeaderTimeoutHttpTools`).
- Connections: uvicorn's `limit_concurrency` answers 503 beyond MAX_CONNECTIONS.
- Body: `BodyLimits` refuses a `Content-Length` over the route's limit with 413 at once, and a body
  that pauses longer than BODY_TIMEOUT_S between chunks with 408.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.exceptions import ClientException, HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.status_codes import HTTP_408_REQUEST_TIMEOUT, HTTP_413_REQUEST_ENTITY_TOO_LARGE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from backend.lib.settings import Settings

MULTIPART_SLACK_BYTES = 1024 * 1024
"""What a multipart upload may carry beyond its file (boundaries, part headers, other fields)."""

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 34\r\n\r\nthe request head came too slowly.\n"
)


class HeaderTimeoutHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's head (`header_timeout_s`,
    set by `server_limits`): from the connection (or the end of the previous response) until the
    headers are complete; past it the client gets 408 and the connection is closed."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request's head; keep-alive may close sooner

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()  # type: ignore[union-attr]
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options that bound connections and slow request heads."""
    protocol = type(
        "HeaderTimeoutHttpTools", (HeaderTimeoutHttpTools,), {"header_timeout_s": settings.header_timeout_s}
    )
    return {"http": protocol, "limit_concurrency": settings.max_connections}


class BodyLimits(ASGIMiddleware):
    """413 for a declared body over the route's limit before reading it; 408 for a stalled body."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, *, upload_limit: int, body_timeout_s: float) -> None:
        self.upload_limit = upload_limit
        self.body_timeout_s = body_timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        declared, chunked = _body_framing(scope)
        if not declared and not chunked:
            # No body comes (most requests: the polls): nothing to bound, no receive to time.
            await next_app(scope, receive, send)
            return
        if declared is not None:
            limit = scope["route_handler"].resolve_request_max_body_size()  # type: ignore[union-attr]
            # Routes without a body limit stream an upload themselves, bounded by MAX_UPLOAD_MB.
            limit = self.upload_limit + MULTIPART_SLACK_BYTES if limit is None else limit
            if declared > limit:
                raise HTTPException(
                    status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                    detail=f"the request body declares {declared} bytes; at most {limit} are accepted here",
                )
        await next_app(scope, self._paced(receive), send)

    def _paced(self, receive: Receive) -> Receive:
        """`receive` that gives up when the client sends nothing for `body_timeout_s` mid-body;
        once the body is complete it waits as long as the app likes (a disconnect watch)."""
        body_done = False

        async def paced() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise ClientException(  # the rest of the body may still come: this connection is done
                    status_code=HTTP_408_REQUEST_TIMEOUT,
                    detail=f"the request body stalled for {self.body_timeout_s:g} s",
                    headers={"connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return paced


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or unreadable) and whether the body is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked
