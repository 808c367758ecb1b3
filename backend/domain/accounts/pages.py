"""HTML pages for signing up, logging in and out, and API tokens (CSRF-protected forms).

The token forms work as plain form posts and, with htmx, swap just the token panel of the page the
same handlers answer (`hx-select`), so there is one code path either way.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_201_CREATED, HTTP_422_UNPROCESSABLE_ENTITY

from backend.domain.accounts.controllers import end_session, start_session
from backend.domain.accounts.deps import provide_token_service, provide_user_service
from backend.domain.accounts.schemas import Credentials, TokenCreate
from backend.domain.accounts.services import ApiTokenService, EmailTakenError, UserService
from backend.lib.auth import CurrentUser
from backend.lib.deps import CurrentUserDep

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _safe_next(value: str | None) -> str:
    """Only same-site paths, so `?next=` can't bounce a user to another site (browsers read `/\\host`
    like `//host`)."""
    if value and value.startswith("/") and value[1:2] not in ("/", "\\"):
        return value
    return "/videos"


def _credentials(data: dict[str, str]) -> Credentials | str:
    try:
        return msgspec.convert(
            {"email": data.get("email", ""), "password": data.get("password", "")}, Credentials
        )
    except msgspec.ValidationError as exc:
        field = "password (at least 8 characters)" if "password" in str(exc) else "email address"
        return f"Enter a valid {field}."


class AccountPages(Controller):
    include_in_schema = False
    dependencies = {"users": Provide(provide_user_service)}

    @get("/")
    async def home(self, request: Request[Any, Any, Any]) -> Redirect:
        return Redirect("/videos" if request.user else "/login")

    @get("/login")
    async def login_form(self, next: FromQuery[str | None] = None) -> Template:
        return Template("login.html", context={"next": _safe_next(next), "mode": "login"})

    @post("/login")
    async def login(
        self, request: Request[Any, Any, Any], users: NamedDependency[UserService], data: Form
    ) -> Template | Redirect:
        creds = _credentials(data)
        user = None if isinstance(creds, str) else await users.authenticate(creds.email, creds.password)
        if user is None:
            context = {
                "error": "Wrong email or password.",
                "email": data.get("email", ""),
                "mode": "login",
                "next": _safe_next(data.get("next")),
            }
            return Template("login.html", context=context, status_code=401)
        start_session(request, user)
        return Redirect(_safe_next(data.get("next")), status_code=303)

    @get(["/signup", "/register"])
    async def register_form(self) -> Template:
        return Template("login.html", context={"mode": "register", "next": "/videos"})

    @post(["/signup", "/register"])
    async def register(
        self, request: Request[Any, Any, Any], users: NamedDependency[UserService], data: Form
    ) -> Template | Redirect:
        creds = _credentials(data)
        if isinstance(creds, str):
            return Template(
                "login.html",
                context={"mode": "register", "error": creds, "email": data.get("email", "")},
                status_code=400,
            )
        try:
            user = await users.register(creds.email, creds.password)
        except EmailTakenError as exc:
            return Template(
                "login.html",
                context={"mode": "register", "error": exc.detail.capitalize() + ".", "email": creds.email},
                status_code=409,
            )
        start_session(request, user)
        return Redirect("/videos", status_code=303)

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        await end_session(request)
        return Redirect("/login", status_code=303)


class TokenPages(Controller):
    """API tokens for scripts: create (the value is shown once, never stored), list, revoke."""

    include_in_schema = False
    dependencies = {"tokens": Provide(provide_token_service)}

    @get("/tokens")
    async def tokens_page(
        self, tokens: NamedDependency[ApiTokenService], current_user: CurrentUserDep
    ) -> Template:
        return await _tokens_page(tokens, current_user)

    @post("/tokens")
    async def create_token(
        self, tokens: NamedDependency[ApiTokenService], current_user: CurrentUserDep, data: Form
    ) -> Template:
        name = data.get("name", "").strip()
        try:
            wanted = msgspec.convert({"name": name}, TokenCreate)
        except msgspec.ValidationError:
            error = "Give the token a name of 1 to 100 characters."
            return await _tokens_page(
                tokens, current_user, error=error, name=name, status_code=HTTP_422_UNPROCESSABLE_ENTITY
            )
        value, _ = await tokens.issue(current_user.id, wanted.name)
        return await _tokens_page(tokens, current_user, new_token=value, status_code=HTTP_201_CREATED)

    @post("/tokens/{token_id:uuid}/revoke")
    async def revoke_token(
        self,
        tokens: NamedDependency[ApiTokenService],
        current_user: CurrentUserDep,
        token_id: FromPath[UUID],
        state: State,
    ) -> Template:
        await tokens.revoke(current_user.id, token_id)
        await state.revocations.revoke_token(token_id)
        return await _tokens_page(tokens, current_user)


async def _tokens_page(
    tokens: ApiTokenService, user: CurrentUser, *, status_code: int = 200, **context: Any
) -> Template:
    """The page with the user's usable tokens; revoked ones are gone for good, so they are not listed."""
    active = [t for t in await tokens.list_for(user.id) if t.revoked_at is None]
    return Template(
        "tokens.html", context={"user": user, "tokens": active, **context}, status_code=status_code
    )
