"""Browser-side defences on every HTTP response: Content-Security-Policy, X-Frame-Options, nosniff.

A before-send hook rather than a middleware or per-route `response_headers`: Litestar calls it for
every message it sends, so the headers also reach answers that no route handler made (the router's
404, a middleware's 401/403, the app-level error handler's problem+json).

The policy allows nothing inline: no inline script or event-handler attribute (the pages' code is
in /static; htmx's hx-on and `allowEval` are off), no inline style (htmx's indicator style lives in
app.css, `includeIndicatorStyles` is off; progress bars are <progress> elements). `connect-src`
falls back to 'self', which also allows the htmx ws extension's ws(s):// to the same host. Images
may be data: URIs (small inline icons, Swagger UI's). The player's `/videos/{id}/source` redirects
to a presigned URL when videos live on S3, so media may come from the S3 server browsers reach.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from gpu_worker.store import StoreSettings

AWS_S3_SOURCE = "https://*.amazonaws.com"


def media_sources(storage: StoreSettings) -> list[str]:
    """Origins the player's source may redirect to: none for the local store (the app serves the
    file); for S3 the public endpoint (else the endpoint, else AWS), with the bucket as a subdomain
    unless addressing is path-style."""
    if storage.backend != "s3":
        return []
    url = storage.public_endpoint_url or storage.endpoint_url
    if url is None:
        return [AWS_S3_SOURCE]
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return [origin] if storage.path_style else [origin, f"{parts.scheme}://*.{parts.netloc}"]


def content_security_policy(storage: StoreSettings) -> str:
    media = " ".join(["'self'", *media_sources(storage)])
    return (
        f"default-src 'self'; img-src 'self' data:; media-src {media}; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(storage: StoreSettings) -> Callable[[Message, Scope], Awaitable[None]]:
    """The before-send hook that sets the three headers on every HTTP response."""
    headers = {
        "Content-Security-Policy": content_security_policy(storage),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
    }

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        sent = MutableScopeHeaders.from_message(message)
        for name, value in headers.items():
            sent[name] = value

    return add_headers
