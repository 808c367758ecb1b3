"""JSON endpoints for accounts: register, log in/out, who am I, API tokens."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from backend.db import models as m
from backend.domain.accounts.deps import provide_token_service, provide_user_service
from backend.domain.accounts.schemas import Credentials, TokenCreate, TokenCreated, TokenOut, UserOut
from backend.domain.accounts.services import ApiTokenService, UserService
from backend.lib.auth import SESSION_USER_KEY
from backend.lib.deps import CurrentUserDep
from backend.lib.openapi import AUTHENTICATED, problems
from backend.lib.revocations import Revocations
from backend.lib.sessions import rotate_session, session_ref


def start_session(request: Request[Any, Any, Any], user: m.User) -> None:
    """A fresh session for the user under a new id: the old id is dropped, so a session id planted
    before log-in can't be reused."""
    request.clear_session()
    request.set_session({SESSION_USER_KEY: str(user.id)})
    rotate_session(request)


async def end_session(request: Request[Any, Any, Any]) -> None:
    """Log out: the session is emptied, and the websockets it opened close in every API process."""
    ref = session_ref(request)
    request.clear_session()
    if ref is not None:
        revocations: Revocations = request.app.state.revocations
        await revocations.end_session(ref)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]
    dependencies = {"users": Provide(provide_user_service)}

    @post(
        "/register",
        operation_id="register",
        status_code=201,
        responses=problems(
            400, 401, 403, 413, 422, 503, described={409: "an account with this email already exists"}
        ),
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        users: NamedDependency[UserService],
        data: JSONBody[Credentials],
    ) -> UserOut:
        user = await users.register(data.email, data.password)
        start_session(request, user)
        return users.to_schema(user, schema_type=UserOut)

    @post(
        "/login",
        operation_id="login",
        status_code=HTTP_200_OK,
        responses=problems(400, 403, 413, 422, 503, described={401: "wrong email or password"}),
    )
    async def login(
        self,
        request: Request[Any, Any, Any],
        users: NamedDependency[UserService],
        data: JSONBody[Credentials],
    ) -> UserOut:
        user = await users.authenticate(data.email, data.password)
        if user is None:
            raise NotAuthorizedException("wrong email or password")
        start_session(request, user)
        return users.to_schema(user, schema_type=UserOut)

    @post(
        "/logout",
        operation_id="logout",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 401, 403, 503),
    )
    async def logout(self, request: Request[Any, Any, Any]) -> None:
        await end_session(request)

    @get("/me", operation_id="me", security=AUTHENTICATED, responses=problems(400, 401, 503))
    async def me(self, users: NamedDependency[UserService], current_user: CurrentUserDep) -> UserOut:
        return users.to_schema(current_user, schema_type=UserOut)


class TokenController(Controller):
    path = "/api/tokens"
    tags = ["accounts"]
    security = AUTHENTICATED
    dependencies = {"tokens": Provide(provide_token_service)}

    @get("/", operation_id="listTokens", responses=problems(400, 401, 503))
    async def list_tokens(
        self, tokens: NamedDependency[ApiTokenService], current_user: CurrentUserDep
    ) -> list[TokenOut]:
        rows = await tokens.list_for(current_user.id)
        return [tokens.to_schema(row, schema_type=TokenOut) for row in rows]

    @post("/", operation_id="createToken", status_code=201, responses=problems(400, 401, 403, 413, 422, 503))
    async def create_token(
        self,
        tokens: NamedDependency[ApiTokenService],
        current_user: CurrentUserDep,
        data: JSONBody[TokenCreate],
    ) -> TokenCreated:
        value, row = await tokens.issue(current_user.id, data.name)
        out = tokens.to_schema(row, schema_type=TokenOut)
        return TokenCreated(**{f: getattr(out, f) for f in out.__struct_fields__}, token=value)

    @delete(
        "/{token_id:uuid}",
        operation_id="revokeToken",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 401, 403, 404, 503),
    )
    async def revoke_token(
        self,
        tokens: NamedDependency[ApiTokenService],
        current_user: CurrentUserDep,
        token_id: FromPath[UUID],
        state: State,
    ) -> None:
        await tokens.revoke(current_user.id, token_id)
        await state.revocations.revoke_token(token_id)
