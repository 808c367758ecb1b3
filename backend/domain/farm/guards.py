"""The operator role's gate: operator-only endpoints and pages answer 404 to everyone else, exactly
like a path that does not exist, so they do not reveal what an account cannot use. Anonymous callers
get the app's usual 401 (a redirect to the log-in form on pages) first."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler

from backend.lib.auth import CurrentUser


def ensure_operator(user: CurrentUser | None) -> CurrentUser:
    """The user if they are an operator; raises 401 when nobody is logged in, else 404."""
    if user is None:
        raise NotAuthorizedException("log in or send an API token")
    if not user.is_operator:
        raise NotFoundException()
    return user


def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard for operator-only controllers and handlers."""
    ensure_operator(connection.scope.get("user"))
