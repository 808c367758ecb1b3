"""CSRF protection for cookie-authenticated requests only.

A request that an API token authenticated can't be forged by another site (browsers never attach
`Authorization: Bearer …` on their own), so it skips the double-submit check the cookie session
needs. The skip follows what authenticated the request (`scope["auth"]`, so this middleware runs
inside AuthMiddleware), never the mere presence of the header: a bearer that names no token (blank,
say `Bearer \\xa0`) leaves the session cookie in charge, and the cookie needs the CSRF token. A bearer
that names a bad token never reaches here: AuthMiddleware answers 401 without looking at the cookie.
"""

from __future__ import annotations

from litestar.exceptions import PermissionDeniedException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

from backend.lib.auth import TokenAuth

SAFE = {"GET", "HEAD", "OPTIONS"}


class CSRFUnlessBearer(CSRFMiddleware):
    """Litestar's double-submit check, skipped for requests an API token authenticated.

    A multipart body without the token header is refused before reading it: the stock middleware
    would parse the whole form into memory to look for `_csrf_token`, which defeats streamed uploads.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if isinstance(scope.get("auth"), TokenAuth):
                await self.app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            if (
                scope["method"] not in SAFE
                and headers.get(b"content-type", b"").startswith(b"multipart/")
                and self.config.header_name.encode() not in headers
            ):
                raise PermissionDeniedException("send the CSRF token in the X-CSRFToken header")
        await super().__call__(scope, receive, send)
