"""The web pages' live progress: `/ws/ui/exports` sends HTML fragments for htmx's ws extension.

Each update of an export is two messages, its card and its history row, rendered by the same
partials as the pages (one element a message: a `<tr>` after an `<article>` in one HTML string would
be dropped by the parser). The page's extension (frontend/static/exports.js) updates the element with
the same id, or inserts a new export where it belongs, so the video page updates its cards and the
history page its rows from one stream. Ordering and
authentication are those of the JSON sockets (`ws.py`): subscribe, then send a snapshot of every
active export, then forward only messages with a newer `seq`; a terminal message is rendered from
Postgres, which holds the final state (size, encoder, error) before the worker announces it.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from litestar import WebSocket, websocket
from litestar.plugins.jinja import JinjaTemplateEngine
from redis.asyncio import Redis
from sqlalchemy import or_, select

from backend.db import models as m
from backend.domain.exports.fanout import RESYNC, Inbox
from backend.domain.exports.messages import export_message
from backend.domain.exports.services import ACTIVE
from backend.domain.exports.views import export_view
from backend.domain.exports.ws import admit, live_inbox, until_disconnect
from gpu_worker.contract import TERMINAL_STATUSES, ProgressMessage, user_channel
from gpu_worker.progress import read_snapshot


class LiveExports:
    """One socket's view of its user's exports: the rows it has rendered and the last seq of each."""

    def __init__(self, socket: WebSocket[Any, Any, Any], user_id: UUID) -> None:
        self._socket = socket
        self._user_id = user_id
        self._engine = cast(JinjaTemplateEngine, socket.app.template_engine)
        self._redis: Redis = socket.app.state.redis
        self._rows: dict[str, tuple[m.Export, str]] = {}
        self._seq: dict[str, int] = {}

    async def catch_up(self) -> None:
        """Every active export, and every one already followed (it may have ended unseen), newest
        first: the row, with the Redis snapshot's progress while Postgres says it runs."""
        wanted = m.Export.status.in_(ACTIVE)
        if self._seq:
            wanted = or_(wanted, m.Export.id.in_([UUID(id_) for id_ in self._seq]))
        for export, name in await self._load(wanted):
            key = str(export.id)
            running = export.status not in TERMINAL_STATUSES
            snapshot = await read_snapshot(self._redis, export.id) if running else None
            seq = snapshot.seq if snapshot is not None else 0
            if running and seq <= self._seq.get(key, -1):
                continue
            self._rows[key] = (export, name)
            self._seq[key] = max(seq, self._seq.get(key, 0))
            await self._send(export, name, export_message(export, snapshot))

    async def follow(self, inbox: Inbox) -> None:
        while True:
            item = await inbox.get()
            if item is RESYNC:
                await self.catch_up()
            elif item is not None and item.seq > self._seq.get(item.export_id, -1):
                await self._apply(item)

    async def _apply(self, message: ProgressMessage) -> None:
        key = message.export_id
        known = self._rows.get(key)
        if known is None or message.status in TERMINAL_STATUSES:
            loaded = await self._load(m.Export.id == UUID(key))
            if not loaded:  # deleted meanwhile: nothing left to show
                return
            known = loaded[0]
            self._rows[key] = known
        self._seq[key] = message.seq
        export, name = known
        final = message.status in TERMINAL_STATUSES and export.status in TERMINAL_STATUSES
        await self._send(export, name, None if final else message)

    async def _load(self, condition: Any) -> list[tuple[m.Export, str]]:
        async with self._socket.app.state.session_maker() as db:
            rows = await db.execute(
                select(m.Export, m.Video.original_filename)
                .join(m.Video, m.Video.id == m.Export.video_id)
                .where(m.Export.user_id == self._user_id, condition)
                .order_by(m.Export.created_at.desc())
            )
            return [(export, name) for export, name in rows]

    async def _send(self, export: m.Export, name: str, live: ProgressMessage | None) -> None:
        view = export_view(export, name, live)
        for template in ("partials/export_card.html", "partials/history_row.html"):
            html = self._engine.get_template(template).render(e=view)
            await self._socket.send_data(html, mode="text")


@websocket("/ws/ui/exports")
async def ui_exports_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """All of the user's exports as HTML fragments (card + history row), until the page goes away."""
    user = await admit(socket)
    if user is None:
        return
    async with live_inbox(socket, user_channel(user.id)) as inbox:
        live = LiveExports(socket, user.id)
        await live.catch_up()
        await until_disconnect(socket, live.follow(inbox))
