"""Revocations reach every API process at once: a revoked API token, a browser session logged out,
or a user whose standing changed (`vexport grant-operator --revoke`), is announced on one Redis
channel; each API process listens, forgets the token in its cache and closes the websockets that
token or session opened (4401).

Pub/sub is at-most-once, so the cache is trusted only while the process is subscribed: it is
suspended when the connection drops and resumed, empty, once the subscription is confirmed again,
so a revocation published meanwhile is read from Postgres instead of being missed. The process that
revokes applies it itself before announcing it, so its own next request is refused even when Redis
is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from uuid import UUID

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from backend.lib.auth import CurrentUser
from backend.lib.pubsub import BACKOFF_MAX_S, BACKOFF_MIN_S, listener_client, stop_listener
from backend.lib.token_cache import TokenCache

log = logging.getLogger(__name__)

CHANNEL = "vexport:auth:revocations"
CONFIRM_TIMEOUT_S = 10.0
ANNOUNCE_TIMEOUT_S = 2.0
"""A hung Redis must not hold up the response to the revocation, which is committed already."""
RECENT = 1024
"""Revoked credentials kept, so a socket admitted just before its revocation arrived is still closed."""

Credential = UUID | str
"""What admitted a websocket: an API token's id, or a session's `backend.lib.sessions.session_ref`."""


class Revocation(msgspec.Struct, frozen=True, omit_defaults=True):
    """One of: a token revoked, a session logged out, or a user whose every token must be looked up again."""

    token_id: UUID | None = None
    session: str | None = None
    user_id: UUID | None = None


_decode = msgspec.json.Decoder(Revocation).decode


def client_name() -> str:
    """This process's revocation listener as CLIENT LIST shows it."""
    return f"vexport:revocations:{os.getpid()}"


async def announce(redis: Redis, revocation: Revocation) -> None:
    """Publish a committed revocation; when Redis does not take it, log and go on: other processes
    then apply it within TOKEN_CACHE_S, or at once if they lost Redis too (their caches suspend)."""
    try:
        async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
            await redis.publish(CHANNEL, msgspec.json.encode(revocation))
    except (RedisError, OSError) as exc:  # TimeoutError is an OSError
        log.warning("could not announce %s: %s", revocation, exc)


class CredentialSockets:
    """The open websockets of each credential: an event per socket, set when it is revoked."""

    def __init__(self, recent: int = RECENT) -> None:
        self._open: dict[Credential, set[asyncio.Event]] = {}
        self._recent: OrderedDict[Credential, None] = OrderedDict()
        self._keep = recent

    @contextlib.contextmanager
    def watch(self, credential: Credential) -> Iterator[asyncio.Event]:
        revoked = asyncio.Event()
        if credential in self._recent:
            revoked.set()
        watching = self._open.setdefault(credential, set())
        watching.add(revoked)
        try:
            yield revoked
        finally:
            watching.discard(revoked)
            if not watching:
                self._open.pop(credential, None)

    def revoke(self, credential: Credential) -> None:
        self._recent[credential] = None
        self._recent.move_to_end(credential)
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        for revoked in self._open.get(credential, ()):
            revoked.set()


class Revocations:
    """This process's token cache and credential sockets, kept true by the revocation channel;
    `start()` in the app's lifespan, `aclose()` at its end."""

    def __init__(self, redis_url: str, publisher: Redis, cache: TokenCache[CurrentUser]) -> None:
        self.cache = cache
        self.sockets = CredentialSockets()
        self._publisher = publisher
        self._redis = listener_client(redis_url, client_name())
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while subscribed (the cache is trusted only then)."""

    async def start(self) -> None:
        self.cache.suspend()
        self._task = asyncio.create_task(self._run(), name="revocations")

    async def aclose(self) -> None:
        await stop_listener(self._task, self._redis)

    async def revoke_token(self, token_id: UUID) -> None:
        """Call once the revocation is committed: applied here at once, then announced."""
        await self._revoke(Revocation(token_id=token_id))

    async def end_session(self, session: str) -> None:
        """Call at log-out: the session's websockets close in every process."""
        await self._revoke(Revocation(session=session))

    async def _revoke(self, revocation: Revocation) -> None:
        self.apply(revocation)
        await announce(self._publisher, revocation)

    def apply(self, revocation: Revocation) -> None:
        if revocation.token_id is not None:
            self.cache.forget(revocation.token_id)
            self.sockets.revoke(revocation.token_id)
        if revocation.session is not None:
            self.sockets.revoke(revocation.session)
        if revocation.user_id is not None:
            self.cache.forget_user(revocation.user_id)

    async def _run(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._subscribe(pubsub)
                self.cache.resume()
                self.listening.set()
                delay = BACKOFF_MIN_S
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                log.warning(
                    "revocation listener lost Redis (%s); tokens are looked up on every request "
                    "until it is back; retrying in %.1f s",
                    exc,
                    delay,
                )
            except Exception:  # a bug here must not leave the cache trusted and deaf
                log.exception("revocation listener failed; retrying in %.1f s", delay)
            finally:
                self.listening.clear()
                self.cache.suspend()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _subscribe(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(CONFIRM_TIMEOUT_S):
            await pubsub.subscribe(CHANNEL)
            while (raw := await pubsub.get_message(timeout=None)) is None or raw["type"] != "subscribe":
                continue

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            raw = await pubsub.get_message(timeout=None)
            if raw is None or raw["type"] != "message":
                continue
            try:
                revocation = _decode(raw["data"])
            except msgspec.MsgspecError:
                log.warning("dropped a malformed revocation: %r", raw["data"][:200])
                continue
            self.apply(revocation)
