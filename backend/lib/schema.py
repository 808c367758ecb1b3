"""Base for the API's msgspec DTOs."""

from __future__ import annotations

import msgspec


class Struct(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Every request/response DTO derives from this, so encoding rules live in one place."""
