"""A lean HTTP/1.1 keep-alive client for the load generators: one connection, one request at a time.

The benchmarks share the machine's cores with the server they measure, so the client's own CPU time
shows up in every latency. httpx spends about 1.3 ms of CPU per request here, as much as the server
needs for a whole GET; this client writes pre-encoded requests and parses answers with httptools
(the C parser uvicorn uses), which costs a small fraction of that, as a wrk-style generator would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httptools

READ_CHUNK = 65536


class HTTPClosed(ConnectionError):
    """The server closed the connection before a whole answer arrived."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class _Parse:
    """httptools callbacks collecting one answer; `done` is set when its last byte is parsed."""

    def __init__(self) -> None:
        self.answer = Answer(status=0)
        self.chunks: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answer.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """One keep-alive connection to `host:port`; `request` sends and awaits one whole answer."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in {"host": f"{host}:{port}", **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    def encode(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        """A request's bytes; encode once and send many times for a fixed request."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        length = f"content-length: {len(body)}\r\n" if body or method in ("POST", "PUT", "PATCH") else ""
        return f"{method} {path} HTTP/1.1\r\n{self._fixed}{extra}{length}\r\n".encode("latin-1") + body

    async def request(self, raw: bytes) -> Answer:
        if self._reader is None or self._writer is None:
            raise RuntimeError("open() the connection first")
        self._writer.write(raw)
        parse = _Parse()
        parser = httptools.HttpResponseParser(parse)
        while not parse.done:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise HTTPClosed("connection closed mid-answer")
            parser.feed_data(data)
        parse.answer.status = parser.get_status_code()
        parse.answer.body = b"".join(parse.chunks)
        return parse.answer
