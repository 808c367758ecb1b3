from __future__ import annotations

from typing import TYPE_CHECKING

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from ._token import ApiToken


class User(UUIDv7AuditBase):
    """An account; `email` is stored lower-cased so uniqueness is case-insensitive. Operators see the
    render farm (workers, metrics details) and every user's exports."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )
