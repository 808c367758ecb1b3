from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

import msgspec

from backend.lib.schema import Struct

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]+$", max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Credentials(Struct):
    email: Email
    password: Password


class UserOut(Struct):
    id: UUID
    email: str
    created_at: dt.datetime


class TokenCreate(Struct):
    name: TokenName


class TokenOut(Struct):
    id: UUID
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    token: str
