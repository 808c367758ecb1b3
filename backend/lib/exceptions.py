"""Errors answer as RFC 9457 problem+json on the API and as an HTML page (or a redirect) elsewhere.

Repository errors map to HTTP here, once: advanced-alchemy's NotFoundError is a 404 — which is
also what a caller gets for another user's id, because every query is scoped to the owner.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from advanced_alchemy.exceptions import IntegrityError, NotFoundError, RepositoryError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/api/", "/ws/")) or "application/json" in request.headers.get(
        "accept", ""
    )


def problem(request: Request[Any, Any, Any], status: int, detail: str, extra: Any = None) -> Response[Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        body["errors"] = extra
    if wants_json(request):
        return Response(body, status_code=status, media_type=PROBLEM_JSON)
    if status == 401:
        return Redirect(f"/login?next={request.url.path}")
    return Template(
        "error.html",
        context={"status": status, "title": _title(status), "detail": detail},
        status_code=status,
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return problem(request, exc.status_code, exc.detail, exc.extra)


def repository_exception_handler(request: Request[Any, Any, Any], exc: RepositoryError) -> Response[Any]:
    if isinstance(exc, NotFoundError):
        return problem(request, 404, "not found")
    if isinstance(exc, IntegrityError):
        return problem(request, HTTP_409_CONFLICT, "conflicts with an existing record")
    log.exception("repository error", exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


def unhandled_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: http_exception_handler,
    NotAuthorizedException: http_exception_handler,
    RepositoryError: repository_exception_handler,
    Exception: unhandled_exception_handler,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "problem"]
