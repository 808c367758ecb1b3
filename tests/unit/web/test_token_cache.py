"""The per-process token cache: answers for TOKEN_CACHE_S, forgets revoked tokens at once, stays bounded."""

from __future__ import annotations

import uuid

from backend.lib.token_cache import TOKEN_CACHE_S, TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_resolved_token_is_answered_until_its_time_is_up() -> None:
    clock = Clock()
    cache = TokenCache[str](clock=clock)
    cache.put("hash-a", uuid.uuid4(), "alice", generation=cache.generation)
    clock.now += TOKEN_CACHE_S - 0.001
    assert cache.get("hash-a") == "alice"
    clock.now += 0.001
    assert cache.get("hash-a") is None
    assert len(cache) == 0


def test_an_unknown_token_is_not_answered() -> None:
    assert TokenCache[str]().get("never-seen") is None


def test_forgetting_a_token_id_drops_it_and_only_it() -> None:
    cache = TokenCache[str]()
    revoked, kept = uuid.uuid4(), uuid.uuid4()
    cache.put("hash-revoked", revoked, "alice", generation=cache.generation)
    cache.put("hash-kept", kept, "alice", generation=cache.generation)
    cache.forget(revoked)
    assert cache.get("hash-revoked") is None
    assert cache.get("hash-kept") == "alice"


def test_an_answer_looked_up_while_its_token_was_revoked_is_not_remembered() -> None:
    cache = TokenCache[str]()
    token_id = uuid.uuid4()
    before_lookup = cache.generation
    cache.forget(token_id)  # the revocation commits while the lookup reads the row
    cache.put("hash-revoked", token_id, "alice", generation=before_lookup)
    assert cache.get("hash-revoked") is None
    cache.put("hash-revoked", token_id, "alice", generation=cache.generation)
    assert cache.get("hash-revoked") == "alice"


def test_a_full_cache_drops_expired_entries_before_live_ones() -> None:
    clock = Clock()
    cache = TokenCache[str](ttl_s=10.0, max_entries=2, clock=clock)
    cache.put("old", uuid.uuid4(), "a", generation=cache.generation)
    clock.now += 5.0
    cache.put("live", uuid.uuid4(), "b", generation=cache.generation)
    clock.now += 5.0  # "old" has just expired, "live" has 5 s left
    cache.put("new", uuid.uuid4(), "c", generation=cache.generation)
    assert (cache.get("old"), cache.get("live"), cache.get("new")) == (None, "b", "c")


def test_a_full_cache_of_live_entries_drops_the_oldest() -> None:
    cache = TokenCache[str](max_entries=2)
    cache.put("first", uuid.uuid4(), "a", generation=cache.generation)
    cache.put("second", uuid.uuid4(), "b", generation=cache.generation)
    cache.put("third", uuid.uuid4(), "c", generation=cache.generation)
    assert (cache.get("first"), cache.get("second"), cache.get("third")) == (None, "b", "c")
    assert len(cache) == 2
