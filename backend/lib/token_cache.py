"""A short per-process memory of resolved bearer tokens, so a client polling many times a second
costs one token lookup every TOKEN_CACHE_S instead of one per request.

With 50 clients polling GET /api/exports/{id}, the lookup was about a fifth of the request's CPU
(bench/api.py). Freshness comes from `backend.lib.revocations`: a revoked token, or a user whose
standing changed, is forgotten by every API process as the revocation is broadcast, and while a
process cannot hear that broadcast (Redis away) its cache is suspended rather than trusted.
TOKEN_CACHE_S bounds what the broadcast cannot carry (an account deactivated in SQL by hand).
Session cookies are not cached. Unknown or revoked tokens are never remembered, so a flood of
made-up tokens cannot fill the memory; nor is an answer whose lookup was under way when a token
was forgotten (it may have read the row before the revocation was committed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from uuid import UUID

TOKEN_CACHE_S = 2.0
MAX_ENTRIES = 10_000
"""Bounded: when full, expired entries go first, then the oldest."""


class _HasId(Protocol):
    @property
    def id(self) -> UUID: ...


User = TypeVar("User", bound=_HasId)


@dataclass(frozen=True, slots=True)
class Remembered(Generic[User]):
    token_id: UUID
    user: User
    expires: float


class TokenCache(Generic[User]):
    """Token hash → the token and the user it resolved to, for `ttl_s` seconds."""

    def __init__(
        self,
        ttl_s: float = TOKEN_CACHE_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, Remembered[User]] = {}
        self._generation = 0
        self._suspended = False

    @property
    def generation(self) -> int:
        """Read before a lookup and hand it to `put`: a `forget` in between voids the answer."""
        return self._generation

    def get(self, token_hash: str) -> Remembered[User] | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[token_hash]
            return None
        return entry

    def put(self, token_hash: str, token_id: UUID, user: User, *, generation: int) -> None:
        if generation != self._generation or self._suspended:
            return
        now = self._clock()
        if len(self._entries) >= self._max and token_hash not in self._entries:
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            if len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
        self._entries[token_hash] = Remembered(token_id, user, now + self._ttl_s)

    def forget(self, token_id: UUID) -> None:
        """Drop a revoked token (after its revocation is committed), so this process refuses it from
        the next request on, and void the answers of lookups still under way."""
        self._drop(lambda e: e.token_id == token_id)

    def forget_user(self, user_id: UUID) -> None:
        """Drop every token of a user whose standing changed (operator role, deactivation)."""
        self._drop(lambda e: e.user.id == user_id)

    def suspend(self) -> None:
        """Forget everything and remember nothing until `resume`: revocations may go unheard."""
        self._suspended = True
        self._drop(lambda _: True)

    def resume(self) -> None:
        """Remember again, from empty: what was revoked while suspended is read afresh."""
        self._suspended = False
        self._drop(lambda _: True)

    def _drop(self, revoked: Callable[[Remembered[User]], bool]) -> None:
        self._generation += 1
        self._entries = {k: e for k, e in self._entries.items() if not revoked(e)}

    def __len__(self) -> int:
        return len(self._entries)
