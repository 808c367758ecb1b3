"""Live progress over websockets: `/ws/exports/{id}` for one export, `/ws/exports` for all of a user's.

Pub/sub is at-most-once, so correctness comes from ordering: subscribe first, then send a snapshot
(the Postgres row with the Redis hash's progress: `messages.export_message`), then forward only
messages whose `seq` is newer than what was sent. A message lost in between is covered by the
periodic Postgres re-check, which ends the stream once the export is final. Sockets share the
process's one Redis pub/sub connection (`fanout.Fanout`); after it reconnects they re-read the
snapshot, since messages may have been lost.

Close codes: 4401 not logged in or an invalid/revoked `?token=` (also when the token or the session
that opened the socket is revoked or logged out later), 4403 cross-site Origin, 4404 no such export
for this user (the same for another user's id), 1000 after a terminal status, 1013 "try again
later" while Redis is away (the subscription cannot be made, the fan-out lost Redis for longer
than its grace, a snapshot cannot be read): clients, the pages' htmx ws extension among them,
reconnect after a pause. Sockets are accepted before being closed with these codes, because a
browser never sees the code of a refused handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect, WebSocketException
from litestar.params import FromPath
from litestar.status_codes import WS_1000_NORMAL_CLOSURE
from redis.asyncio import Redis
from sqlalchemy import or_, select

from backend.db import models as m
from backend.domain.exports.fanout import RESYNC, Fanout, FanoutUnavailable, Inbox
from backend.domain.exports.messages import export_message
from backend.domain.exports.services import ACTIVE
from backend.lib.auth import AUTH_REJECTED, AUTH_SESSION, CurrentUser, TokenAuth
from backend.lib.redis_clients import REDIS_UNAVAILABLE, WS_TRY_AGAIN_LATER, WS_TRY_AGAIN_LATER_REASON
from backend.lib.revocations import Credential, Revocations
from backend.lib.sessions import session_ref
from gpu_worker.contract import TERMINAL_STATUSES, ProgressMessage, export_channel, user_channel
from gpu_worker.progress import read_snapshot

WS_UNAUTHENTICATED = 4401
WS_FORBIDDEN_ORIGIN = 4403
WS_NOT_FOUND = 4404
RECHECK_S = 15.0
"""How long a single-export socket waits on pub/sub before asking Postgres whether the export ended."""


def same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    """Browsers always send Origin; scripts often send none, and cannot ride on a victim's cookie."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == socket.headers.get("host", "").lower()


async def admit(socket: WebSocket[Any, Any, Any]) -> CurrentUser | None:
    """Accept, then keep the socket only for a same-site, logged-in caller (the AuthMiddleware has
    already resolved the session cookie or `?token=` into `scope["user"]`)."""
    await socket.accept()
    if not same_origin(socket):
        await socket.close(code=WS_FORBIDDEN_ORIGIN, reason="cross-site websocket refused")
        return None
    user: CurrentUser | None = socket.scope.get("user")
    if user is None:
        bad_token = socket.scope.get("auth") == AUTH_REJECTED
        reason = "invalid or revoked API token" if bad_token else "log in or pass ?token="
        await socket.close(code=WS_UNAUTHENTICATED, reason=reason)
        return None
    return user


@contextlib.asynccontextmanager
async def live_inbox(socket: WebSocket[Any, Any, Any], channel: str) -> AsyncIterator[Inbox]:
    """The socket's inbox of `channel` on the process's fan-out. Redis being away, while subscribing
    or at any point of the socket's life (the fan-out's outage, a snapshot read), closes the socket
    with 1013, which tells the client to come back later."""
    fanout: Fanout = socket.app.state.fanout
    try:
        async with fanout.subscribe(channel) as inbox:
            yield inbox
    except (FanoutUnavailable, *REDIS_UNAVAILABLE) as exc:
        raise WebSocketException(detail=WS_TRY_AGAIN_LATER_REASON, code=WS_TRY_AGAIN_LATER) from exc


async def until_disconnect(socket: WebSocket[Any, Any, Any], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends (then close, 1000), the client goes away, or the API token or
    session that opened the socket is revoked (then close, 4401), whichever is first."""
    with _revoked(socket) as (revoked, reason):
        follow = asyncio.ensure_future(work)
        listener = asyncio.ensure_future(_drain(socket))
        revocation = asyncio.ensure_future(revoked.wait())
        tasks = (follow, listener, revocation)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if follow in done:
                follow.result()
                await socket.close(code=WS_1000_NORMAL_CLOSURE)
            elif revocation in done:
                await socket.close(code=WS_UNAUTHENTICATED, reason=reason)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def _revoked(socket: WebSocket[Any, Any, Any]) -> Iterator[tuple[asyncio.Event, str]]:
    """An event set when what admitted the socket is revoked, and the close reason to give then."""
    auth = socket.scope.get("auth")
    credential: Credential | None = None
    if isinstance(auth, TokenAuth):
        credential, reason = auth.token_id, "API token revoked"
    elif auth == AUTH_SESSION:
        credential, reason = session_ref(socket), "logged out"
    if credential is None:
        yield asyncio.Event(), ""
        return
    revocations: Revocations = socket.app.state.revocations
    with revocations.sockets.watch(credential) as revoked:
        yield revoked, reason


async def _drain(socket: WebSocket[Any, Any, Any]) -> None:
    """Clients have nothing to say; reading is how a disconnect is noticed."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data(mode="text")


async def _send(socket: WebSocket[Any, Any, Any], message: ProgressMessage) -> None:
    await socket.send_data(msgspec.json.encode(message), mode="text")


async def _load(socket: WebSocket[Any, Any, Any], user_id: UUID, export_id: UUID) -> m.Export | None:
    async with socket.app.state.session_maker() as db:
        return await db.scalar(select(m.Export).where(m.Export.id == export_id, m.Export.user_id == user_id))


@websocket("/ws/exports/{export_id:uuid}")
async def export_progress_socket(socket: WebSocket[Any, Any, Any], export_id: FromPath[UUID]) -> None:
    """One export: snapshot, then live JSON `ProgressMessage`s, closed (1000) after a terminal one."""
    user = await admit(socket)
    if user is None:
        return
    redis: Redis = socket.app.state.redis
    async with live_inbox(socket, export_channel(export_id)) as inbox:
        export, snapshot = await asyncio.gather(
            _load(socket, user.id, export_id), read_snapshot(redis, export_id)
        )
        if export is None:
            await socket.close(code=WS_NOT_FOUND, reason="no such export")
            return
        # Postgres decides whether it is over; Redis only knows better how far along it is.
        first = export_message(export, snapshot)
        seq = first.seq
        await _send(socket, first)
        if first.status in TERMINAL_STATUSES:
            await socket.close(code=WS_1000_NORMAL_CLOSURE)
            return
        reload = functools.partial(_load, socket, user.id, export_id)
        resnapshot = functools.partial(read_snapshot, redis, export_id)
        await until_disconnect(socket, _follow_one(socket, inbox, seq, reload, resnapshot))


async def _follow_one(
    socket: WebSocket[Any, Any, Any],
    inbox: Inbox,
    last_seq: int,
    reload: Callable[[], Awaitable[m.Export | None]],
    resnapshot: Callable[[], Awaitable[ProgressMessage | None]],
) -> None:
    while True:
        item = await inbox.get(RECHECK_S)
        if item is RESYNC:  # messages may be lost: the snapshot has the latest, else ask Postgres
            item = await resnapshot()
        if item is None:  # a quiet spell (or no snapshot to resync from): ask the source of truth
            export = await reload()
            if export is None or export.status in TERMINAL_STATUSES:
                if export is not None:
                    await _send(socket, export_message(export, await resnapshot(), seq=last_seq))
                return
            continue
        if item.seq <= last_seq:
            continue
        await _send(socket, item)
        last_seq = item.seq
        if item.status in TERMINAL_STATUSES:
            return


@websocket("/ws/exports")
async def user_exports_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Every export of the user: a snapshot of each active one, then live messages until the client leaves."""
    user = await admit(socket)
    if user is None:
        return
    async with live_inbox(socket, user_channel(user.id)) as inbox:
        last_seq: dict[str, int] = {}
        await _catch_up(socket, user.id, last_seq)
        await until_disconnect(socket, _follow_all(socket, inbox, user.id, last_seq))


async def _catch_up(socket: WebSocket[Any, Any, Any], user_id: UUID, last_seq: dict[str, int]) -> None:
    """Send the snapshot of every active export, and of every export already followed (it may have
    ended unseen), when it is newer than what was sent; newest export first."""
    redis: Redis = socket.app.state.redis
    wanted = m.Export.status.in_(ACTIVE)
    if last_seq:
        wanted = or_(wanted, m.Export.id.in_([UUID(id_) for id_ in last_seq]))
    async with socket.app.state.session_maker() as db:
        exports = (
            await db.scalars(
                select(m.Export)
                .where(m.Export.user_id == user_id, wanted)
                .order_by(m.Export.created_at.desc())
            )
        ).all()
    for export in exports:
        snapshot = export_message(export, await read_snapshot(redis, export.id))
        if snapshot.seq > last_seq.get(snapshot.export_id, -1):
            await _send(socket, snapshot)
            last_seq[snapshot.export_id] = snapshot.seq


async def _follow_all(
    socket: WebSocket[Any, Any, Any], inbox: Inbox, user_id: UUID, last_seq: dict[str, int]
) -> None:
    while True:
        item = await inbox.get()
        if item is RESYNC:
            await _catch_up(socket, user_id, last_seq)
        elif item is not None and item.seq > last_seq.get(item.export_id, -1):
            await _send(socket, item)
            last_seq[item.export_id] = item.seq
