"""Errors answer as RFC 9457 problem+json on the API and as an HTML page (or a redirect) elsewhere.

Repository errors map to HTTP here, once: advanced-alchemy's NotFoundError is a 404 — which is
also what a caller gets for another user's id, because every query is scoped to the owner.
An exception's headers (Retry-After, Content-Range, WWW-Authenticate) always reach the response,
and field errors have one shape app-wide: `errors: [{"field": "body.segments[1].end", "message"}]`.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from advanced_alchemy.exceptions import IntegrityError, NotFoundError, RepositoryError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from backend.db.hotpath import DatabaseUnavailableError
from backend.lib.redis_clients import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_S = 5
REDIS_RETRY_AFTER_S = 5
PROBLEM_JSON = "application/problem+json"
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.+)`")


def wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/api/", "/ws/")) or "application/json" in request.headers.get(
        "accept", ""
    )


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    extra: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        body["errors"] = extra
    if wants_json(request):
        return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
    if status == 401:
        return Redirect(f"/login?next={request.url.path}")
    return Template(
        "error.html",
        # The signed-in user (if any) keeps the page's navigation on error pages too.
        context={
            "status": status,
            "title": _title(status),
            "detail": detail,
            "user": request.scope.get("user"),
        },
        status_code=status,
        headers=headers,
    )


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Litestar's validation errors (`{"key": "segments[0]", "message", "source": "body"}`) in the API's
    shape, `{"field": "body.segments[0]", "message"}`; an unknown field is named itself rather than by
    the object that holds it."""
    return [_field_error(error) for error in errors]


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    source, key = error.get("source"), error.get("key")
    if key == "data":  # the body's top level
        key = None
    parts = [str(getattr(p, "value", p)) for p in (source, key) if p]
    if unknown := _UNKNOWN_FIELD.fullmatch(error["message"]):
        parts.append(unknown.group(1))
    return {"field": ".".join(parts) or "body", "message": error["message"]}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status, extra = exc.status_code, exc.extra
    if isinstance(exc, ValidationException):
        # Litestar found a parameter or body field of the wrong type, range or enum value, missing or
        # unknown: the request was read and breaks the contract, a 422 like the render contract's own
        # errors. 400 is left for input that cannot be read at all (malformed JSON or multipart).
        status = HTTP_422_UNPROCESSABLE_ENTITY
        if isinstance(extra, list):
            extra = field_errors(extra)
    return problem(request, status, exc.detail, extra, exc.headers)


def repository_exception_handler(request: Request[Any, Any, Any], exc: RepositoryError) -> Response[Any]:
    if isinstance(exc, NotFoundError):
        return problem(request, 404, "not found")
    if isinstance(exc, IntegrityError):
        return problem(request, HTTP_409_CONFLICT, "conflicts with an existing record")
    log.exception("repository error", exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


def database_unavailable_handler(
    request: Request[Any, Any, Any], exc: DatabaseUnavailableError
) -> Response[Any]:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        "the database is not answering; try again shortly",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def redis_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("%s %s: Redis unavailable: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        "the queue and session store (Redis) is not answering; try again shortly",
        headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
    )


def unhandled_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: http_exception_handler,
    NotAuthorizedException: http_exception_handler,
    RepositoryError: repository_exception_handler,
    DatabaseUnavailableError: database_unavailable_handler,
    **dict.fromkeys(REDIS_UNAVAILABLE, redis_unavailable_handler),
    Exception: unhandled_exception_handler,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "field_errors", "problem"]
