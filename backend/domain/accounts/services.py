"""Accounts: registration, password log-in and API tokens, one service per aggregate."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.exceptions import HTTPException

from backend.db import models as m
from backend.lib import security


class EmailTakenError(HTTPException):
    status_code = 409
    detail = "an account with this email already exists"


class UserService(SQLAlchemyAsyncRepositoryService[m.User]):
    class Repo(SQLAlchemyAsyncRepository[m.User]):
        model_type = m.User

    repository_type = Repo

    async def register(self, email: str, password: str, *, operator: bool = False) -> m.User:
        email = email.strip().lower()
        if await self.exists(email=email):
            raise EmailTakenError
        return await self.create(
            m.User(email=email, password_hash=security.hash_password(password), is_operator=operator)
        )

    async def set_operator(self, email: str, operator: bool) -> m.User:
        """Grant or revoke the operator role (the farm's pages, metrics details, every user's exports)."""
        user = await self.get_one_or_none(email=email.strip().lower())
        if user is None:
            raise NotFoundError(f"no account with the email {email.strip().lower()}")
        user.is_operator = operator
        return await self.update(user)

    async def authenticate(self, email: str, password: str) -> m.User | None:
        """The user when the password matches, else None; upgrades the hash when parameters changed."""
        user = await self.get_one_or_none(email=email.strip().lower())
        if user is None or not user.is_active:
            security.hash_password(password)  # same cost whether or not the email exists
            return None
        if not security.verify_password(user.password_hash, password):
            return None
        if security.needs_rehash(user.password_hash):
            user.password_hash = security.hash_password(password)
            user = await self.update(user)
        return user


class ApiTokenService(SQLAlchemyAsyncRepositoryService[m.ApiToken]):
    class Repo(SQLAlchemyAsyncRepository[m.ApiToken]):
        model_type = m.ApiToken

    repository_type = Repo

    async def issue(self, user_id: UUID, name: str) -> tuple[str, m.ApiToken]:
        """A new token; the plain value is returned here once and never stored."""
        token = security.new_api_token()
        row = await self.create(
            m.ApiToken(
                user_id=user_id,
                name=name,
                token_hash=security.hash_api_token(token),
                prefix=token[:10],
            )
        )
        return token, row

    async def list_for(self, user_id: UUID) -> list[m.ApiToken]:
        rows = await self.get_many(m.ApiToken.user_id == user_id, order_by=[("created_at", True)])
        return list(rows)

    async def revoke(self, user_id: UUID, token_id: UUID) -> m.ApiToken:
        row = await self.get_one_or_none(id=token_id, user_id=user_id)
        if row is None:
            raise NotFoundError("token not found")
        if row.revoked_at is None:
            row.revoked_at = dt.datetime.now(dt.UTC)
            # Committed here, not when the response is sent: the caller then announces it to every
            # API process (backend.lib.revocations), and a lookup after that must read it.
            row = await self.update(row, auto_commit=True)
        return row
