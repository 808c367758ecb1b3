"""One Redis pub/sub connection per API process, fanned out to every local progress subscriber.

A pub/sub connection per websocket costs a Redis client, two file descriptors and a Python wake-up
per socket for every published message; here each message crosses Redis once, is decoded once and
is handed to in-process inboxes. Channels are reference-counted: SUBSCRIBE when the first local
subscriber arrives, UNSUBSCRIBE when the last one leaves.

Inboxes are bounded so one slow websocket never holds up the others: when an inbox is full, its
oldest non-terminal message is dropped (the next message supersedes it, since progress is a
snapshot, and clients drop stale `seq`s anyway). Terminal messages and `RESYNC` are never dropped.

Redis going away briefly is survived: the reader reconnects with exponential backoff, re-subscribes
every channel and, once each is confirmed, puts `RESYNC` into its inboxes, because whatever was
published meanwhile is lost (pub/sub is at-most-once): a subscriber re-reads the snapshot on `RESYNC`.
Redis away for longer than OUTAGE_GRACE_S is an outage: every inbox raises `FanoutUnavailable` from
`get()` and new subscriptions raise it at once, until the reader is connected again, so a socket
closes and tells its client to come back later instead of staying open and silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from backend.lib.pubsub import BACKOFF_MAX_S, BACKOFF_MIN_S, listener_client, stop_listener
from gpu_worker.contract import TERMINAL_STATUSES, ProgressMessage

log = logging.getLogger(__name__)

INBOX_SIZE = 64
"""Messages one subscriber may lag behind before its oldest non-terminal ones are dropped."""
SUBSCRIBE_TIMEOUT_S = 10.0
"""How long `subscribe()` waits for Redis to confirm a new channel."""
OUTAGE_GRACE_S = 5.0
"""How long the reader may be without Redis before subscribers are told (a restart is quicker)."""


class FanoutUnavailable(Exception):
    """No live messages can come: Redis has been out of reach for longer than the grace, or did not
    confirm a subscription in time. Come back later."""


class Signal(enum.Enum):
    RESYNC = "resync"


RESYNC = Signal.RESYNC
"""Messages may have been lost (Redis reconnected): re-read the snapshot."""

Item = ProgressMessage | Literal[Signal.RESYNC]

_decode = msgspec.json.Decoder(ProgressMessage).decode


def client_name() -> str:
    """This process's fan-out connection as CLIENT LIST shows it."""
    return f"vexport:progress-fanout:{os.getpid()}"


def _droppable(item: Item) -> bool:
    return item is not RESYNC and item.status not in TERMINAL_STATUSES


class Inbox:
    """One subscriber's queue (a single consumer): bounded for progress, unbounded for what must arrive."""

    def __init__(self, size: int = INBOX_SIZE) -> None:
        self._items: deque[Item] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self._failed = False
        self.dropped = 0

    def put(self, item: Item) -> None:
        if len(self._items) >= self._size:
            for i, queued in enumerate(self._items):
                if _droppable(queued):
                    del self._items[i]
                    self.dropped += 1
                    break
        self._items.append(item)
        self._ready.set()

    def fail(self) -> None:
        """Once what is queued has been taken, `get` raises FanoutUnavailable."""
        self._failed = True
        self._ready.set()

    async def get(self, wait_s: float | None = None) -> Item | None:
        """The next item, or None after `wait_s` seconds without one."""
        while not self._items:
            if self._failed:
                raise FanoutUnavailable("live progress lost Redis")
            self._ready.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._items.popleft()


class Fanout:
    """The process's progress subscriptions; `start()` in the app's lifespan, `aclose()` at its end."""

    def __init__(
        self, redis: Redis, *, inbox_size: int = INBOX_SIZE, outage_grace_s: float = OUTAGE_GRACE_S
    ) -> None:
        self._redis = redis
        self._inbox_size = inbox_size
        self._outage_grace_s = outage_grace_s
        self._outage_timer: asyncio.TimerHandle | None = None
        self._outage = False
        """Set once Redis has been away for the grace; cleared when the reader is connected again."""
        self._inboxes: dict[str, set[Inbox]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._unconfirmed: Counter[str] = Counter()
        """SUBSCRIBEs sent and not yet confirmed per channel: a quick unsubscribe + subscribe must not
        take the first confirmation for the second."""
        self._resync: set[str] = set()
        self._pubsub: PubSub | None = None
        """Set while connected; commands go through `_send` under `_lock`, so they reach Redis in order."""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Fanout:
        """A Fanout on its own Redis client: a lost connection reaches the reader, which
        re-subscribes and sends RESYNC."""
        return cls(listener_client(url, client_name()), **kwargs)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="progress-fanout")

    async def aclose(self) -> None:
        await stop_listener(self._task, self._redis)
        self._end_outage()

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Inbox]:
        """An inbox of `channel`'s messages, yielded once Redis has confirmed the subscription, so a
        snapshot read afterwards cannot miss a message; raises FanoutUnavailable when Redis does not
        (in time, or at once during an outage)."""
        if self._outage:
            raise FanoutUnavailable("live progress has no Redis")
        inbox = Inbox(self._inbox_size)
        inboxes = self._inboxes.setdefault(channel, set())
        inboxes.add(inbox)
        try:
            if len(inboxes) == 1:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                await self._send("subscribe", channel)
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    await asyncio.shield(self._confirmed[channel])
            except TimeoutError as exc:
                raise FanoutUnavailable("Redis did not confirm the subscription") from exc
            yield inbox
        finally:
            inboxes.discard(inbox)
            if not inboxes:
                del self._inboxes[channel]
                self._confirmed.pop(channel).cancel()
                await self._send("unsubscribe", channel)

    async def _send(self, command: Literal["subscribe", "unsubscribe"], channel: str) -> None:
        """Send now when connected; when not, the reader subscribes whatever is wanted on reconnect."""
        async with self._lock:
            if self._pubsub is None:
                return
            if command == "subscribe":
                self._unconfirmed[channel] += 1
            try:
                await getattr(self._pubsub, command)(channel)
            except (RedisError, OSError) as exc:  # the reader sees it too, and reconnects
                log.debug("progress fan-out could not %s %s: %s", command, channel, exc)

    async def _run(self) -> None:
        delay, connected_before = BACKOFF_MIN_S, False
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.connect()
                async with self._lock:
                    self._pubsub = pubsub
                    self._unconfirmed = Counter(self._inboxes.keys())
                    if connected_before:
                        self._resync = set(self._inboxes)
                    if self._inboxes:
                        await pubsub.subscribe(*self._inboxes)
                self._end_outage()
                if connected_before:
                    log.warning("progress fan-out reconnected to Redis")
                connected_before, delay = True, BACKOFF_MIN_S
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                log.warning("progress fan-out lost Redis (%s); retrying in %.1f s", exc, delay)
            except Exception:  # a bug here must not end live progress for the whole process
                log.exception("progress fan-out failed; retrying in %.1f s", delay)
            finally:
                self._pubsub = None
                self._start_outage_clock()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _end_outage(self) -> None:
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        self._outage_timer, self._outage = None, False

    def _start_outage_clock(self) -> None:
        if self._outage_timer is None and not self._outage:
            loop = asyncio.get_running_loop()
            self._outage_timer = loop.call_later(self._outage_grace_s, self._declare_outage)

    def _declare_outage(self) -> None:
        """Fail every inbox and every subscription still waiting for its confirmation."""
        self._outage_timer, self._outage = None, True
        log.warning(
            "progress fan-out without Redis for %.0f s; live sockets close until it is back",
            self._outage_grace_s,
        )
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_exception(FanoutUnavailable("live progress has no Redis"))
        for inboxes in self._inboxes.values():
            for inbox in inboxes:
                inbox.fail()

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            raw = await pubsub.get_message(timeout=None)
            if raw is None:
                continue
            channel = raw["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if raw["type"] == "message":
                self._deliver(channel, raw["data"])
            elif raw["type"] == "subscribe":
                self._on_confirmed(channel)

    def _on_confirmed(self, channel: str) -> None:
        self._unconfirmed[channel] -= 1
        if self._unconfirmed[channel] > 0:
            return
        del self._unconfirmed[channel]
        confirmed = self._confirmed.get(channel)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)
        if channel in self._resync:
            self._resync.discard(channel)
            for inbox in self._inboxes.get(channel, ()):
                inbox.put(RESYNC)

    def _deliver(self, channel: str, data: bytes | str) -> None:
        """Decode once, then put into every local inbox of the channel; one bad publisher must not
        end anybody's stream, so a malformed message is logged and dropped."""
        inboxes = self._inboxes.get(channel)
        if not inboxes:
            return
        try:
            message = _decode(data)
        except msgspec.MsgspecError:
            log.warning("dropped a malformed progress message on %r", channel)
            return
        for inbox in inboxes:
            inbox.put(message)
