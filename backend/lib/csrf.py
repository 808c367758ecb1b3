"""CSRF protection for cookie-authenticated requests only.

A request that carries `Authorization: Bearer …` can't be forged by another site (browsers never
attach that header on their own), so it skips the double-submit check the cookie session needs.
"""

from __future__ import annotations

from litestar.exceptions import PermissionDeniedException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

SAFE = {"GET", "HEAD", "OPTIONS"}


class CSRFUnlessBearer(CSRFMiddleware):
    """Litestar's double-submit check, skipped for bearer tokens.

    A multipart body without the token header is refused before reading it: the stock middleware
    would parse the whole form into memory to look for `_csrf_token`, which defeats streamed uploads.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"")[:7].lower() == b"bearer ":
                await self.app(scope, receive, send)
                return
            if (
                scope["method"] not in SAFE
                and headers.get(b"content-type", b"").startswith(b"multipart/")
                and self.config.header_name.encode() not in headers
            ):
                raise PermissionDeniedException("send the CSRF token in the X-CSRFToken header")
        await super().__call__(scope, receive, send)
