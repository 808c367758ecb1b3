"""The per-process token cache: answers for TOKEN_CACHE_S, forgets revoked tokens at once, stays bounded,
and remembers nothing while suspended (its revocation channel is down)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from backend.lib.token_cache import TOKEN_CACHE_S, TokenCache


@dataclass(frozen=True)
class User:
    name: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)


ALICE, BOB = User("alice"), User("bob")


def who(cache: TokenCache[User], token_hash: str) -> str | None:
    entry = cache.get(token_hash)
    return None if entry is None else entry.user.name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_resolved_token_is_answered_until_its_time_is_up() -> None:
    clock = Clock()
    cache = TokenCache[User](clock=clock)
    cache.put("hash-a", uuid.uuid4(), ALICE, generation=cache.generation)
    clock.now += TOKEN_CACHE_S - 0.001
    assert who(cache, "hash-a") == "alice"
    clock.now += 0.001
    assert who(cache, "hash-a") is None
    assert len(cache) == 0


def test_an_unknown_token_is_not_answered() -> None:
    assert TokenCache[User]().get("never-seen") is None


def test_forgetting_a_token_id_drops_it_and_only_it() -> None:
    cache = TokenCache[User]()
    revoked, kept = uuid.uuid4(), uuid.uuid4()
    cache.put("hash-revoked", revoked, ALICE, generation=cache.generation)
    cache.put("hash-kept", kept, ALICE, generation=cache.generation)
    cache.forget(revoked)
    assert who(cache, "hash-revoked") is None
    assert who(cache, "hash-kept") == "alice"


def test_an_answer_looked_up_while_its_token_was_revoked_is_not_remembered() -> None:
    cache = TokenCache[User]()
    token_id = uuid.uuid4()
    before_lookup = cache.generation
    cache.forget(token_id)  # the revocation commits while the lookup reads the row
    cache.put("hash-revoked", token_id, ALICE, generation=before_lookup)
    assert who(cache, "hash-revoked") is None
    cache.put("hash-revoked", token_id, ALICE, generation=cache.generation)
    assert who(cache, "hash-revoked") == "alice"


def test_a_full_cache_drops_expired_entries_before_live_ones() -> None:
    clock = Clock()
    cache = TokenCache[User](ttl_s=10.0, max_entries=2, clock=clock)
    cache.put("old", uuid.uuid4(), User("a"), generation=cache.generation)
    clock.now += 5.0
    cache.put("live", uuid.uuid4(), User("b"), generation=cache.generation)
    clock.now += 5.0  # "old" has just expired, "live" has 5 s left
    cache.put("new", uuid.uuid4(), User("c"), generation=cache.generation)
    assert (who(cache, "old"), who(cache, "live"), who(cache, "new")) == (None, "b", "c")


def test_a_full_cache_of_live_entries_drops_the_oldest() -> None:
    cache = TokenCache[User](max_entries=2)
    cache.put("first", uuid.uuid4(), User("a"), generation=cache.generation)
    cache.put("second", uuid.uuid4(), User("b"), generation=cache.generation)
    cache.put("third", uuid.uuid4(), User("c"), generation=cache.generation)
    assert (who(cache, "first"), who(cache, "second"), who(cache, "third")) == (None, "b", "c")
    assert len(cache) == 2


def test_forgetting_a_user_drops_every_token_of_that_user_and_only_those() -> None:
    cache = TokenCache[User]()
    cache.put("alice-laptop", uuid.uuid4(), ALICE, generation=cache.generation)
    cache.put("alice-ci", uuid.uuid4(), ALICE, generation=cache.generation)
    cache.put("bob-ci", uuid.uuid4(), BOB, generation=cache.generation)
    cache.forget_user(ALICE.id)
    assert (who(cache, "alice-laptop"), who(cache, "alice-ci"), who(cache, "bob-ci")) == (None, None, "bob")


def test_a_suspended_cache_forgets_everything_and_remembers_nothing_new() -> None:
    cache = TokenCache[User]()
    cache.put("known", uuid.uuid4(), ALICE, generation=cache.generation)
    cache.suspend()
    assert who(cache, "known") is None
    cache.put("new", uuid.uuid4(), BOB, generation=cache.generation)
    assert who(cache, "new") is None
    assert len(cache) == 0


def test_a_resumed_cache_remembers_again_but_not_a_lookup_begun_while_suspended() -> None:
    cache = TokenCache[User]()
    cache.suspend()
    begun_while_deaf = cache.generation
    cache.resume()
    cache.put("stale", uuid.uuid4(), ALICE, generation=begun_while_deaf)
    cache.put("fresh", uuid.uuid4(), BOB, generation=cache.generation)
    assert (who(cache, "stale"), who(cache, "fresh")) == (None, "bob")
