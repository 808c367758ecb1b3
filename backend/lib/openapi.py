"""The OpenAPI document's shared parts, and the Swagger UI page that shows it.

Errors: every error on the API is RFC 9457 problem+json (backend.lib.exceptions), so operations list
their error statuses through `problems()` rather than Litestar's default `{status_code, detail,
extra}` schema. Security: a bearer API token or the browser's session cookie; operations that need
a user carry both requirements (`AUTHENTICATED`), public ones none.

The page (/schema/swagger) loads Swagger UI from /static/vendor/ (pinned by frontend/package.json and
copied there by frontend/vendor.sh, like htmx) and starts it from /static/swagger.js rather than an
inline script: it works with no internet and under a `script-src 'self'` Content-Security-Policy.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

from backend.lib.exceptions import PROBLEM_JSON
from backend.lib.schema import Struct
from backend.lib.sessions import SESSION_COOKIE

BEARER = "bearerToken"
SESSION = "sessionCookie"
AUTHENTICATED: list[SecurityRequirement] = [{BEARER: []}, {SESSION: []}]
"""Either credential will do (OpenAPI: alternatives are separate requirement objects)."""


class FieldError(Struct):
    field: str
    """Where the problem is: `body.segments[1].end`, `query.limit`, `header.Idempotency-Key`."""
    message: str


class Problem(Struct):
    """RFC 9457 problem+json, as every error on the API answers (documentation only: the answers
    are built by backend.lib.exceptions.problem)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


_WHY: dict[int, str] = {
    400: "the request could not be read: malformed JSON or multipart, invalid UTF-8, a bad Content-Length",
    401: "no valid bearer token or session (a bearer token that is sent must be valid)",
    403: "a cookie-authenticated request without the X-CSRFToken header",
    404: "no such object for this user",
    413: "the body is over the size limit",
    422: "the request breaks the contract; `errors[].field` names each field",
    503: "the database or Redis is not answering; try again after Retry-After",
}


def problems(*statuses: int, described: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """Error responses as problem+json: `problems(401, 422, described={404: "no such export"})`
    documents 401 and 422 with their usual meaning and 404 with the one given."""
    why = {**{status: _WHY[status] for status in statuses}, **(described or {})}
    return {
        status: ResponseSpec(Problem, description=text, media_type=PROBLEM_JSON, generate_examples=False)
        for status, text in sorted(why.items())
    }


class SwaggerPage(SwaggerRenderPlugin):
    """Swagger UI from the app's own static files, started by a script file (no inline code)."""

    def __init__(self, csrf: CSRFConfig) -> None:
        super().__init__(
            js_url="/static/vendor/swagger-ui-bundle.js", css_url="/static/vendor/swagger-ui.css"
        )
        self.csrf = csrf

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(openapi_schema["info"]["title"])
        settings = {
            "spec-url": self.get_openapi_json_route(request),
            "csrf-cookie": self.csrf.cookie_name,
            "csrf-header": self.csrf.header_name,
        }
        data = " ".join(f'data-{name}="{escape(value)}"' for name, value in settings.items())
        return (
            "<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{self.css_url}">'
            f'<script src="{self.js_url}" defer></script>'
            f'<script src="/static/swagger.js" defer {data}></script>'
            '</head><body><div id="swagger-ui"></div></body></html>\n'
        ).encode()


def openapi_config(csrf: CSRFConfig) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Video Export",
        version="0.1.0",
        path="/schema",
        render_plugins=[SwaggerPage(csrf)],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API token (`POST /api/tokens`) as `Authorization: Bearer <token>`.",
                ),
                SESSION: SecurityScheme(
                    type="apiKey",
                    name=SESSION_COOKIE,
                    security_scheme_in="cookie",
                    description=(
                        "The browser's session after `POST /api/auth/login`; writes also need the "
                        "X-CSRFToken header (the `csrftoken` cookie's value)."
                    ),
                ),
            }
        ),
    )
