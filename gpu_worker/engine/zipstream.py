"""A streaming ZIP writer: stored entries, ZIP64 always, any synchronous sink with `write`.

The sink is a plain blocking one (a local file, a socket wrapper, a BytesIO). A store's
`ObjectWriter` is async and cannot be passed in directly: the clips ZIP is written to a local
file and then uploaded with `Store.put_file`, which streams it to S3 in parts.

It never seeks: each entry's CRC and size are computed from the finished file before its local
header is written, so no data descriptors are needed (some readers mishandle them for stored
entries), and offsets are counted from the bytes written. Memory use is one read buffer.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20
_VERSION = 45  # ZIP64
_UTF8 = 0x0800
_MAX32 = 0xFFFFFFFF


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class ZipStreamWriter:
    """Append files as stored ZIP64 entries to `sink`; `close()` writes the central directory."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._offset = 0
        self._central: list[bytes] = []

    @property
    def bytes_written(self) -> int:
        return self._offset

    def add_file(self, name: str, path: str | os.PathLike[str]) -> None:
        """Store the file at `path` under `name` (read twice: CRC first, then the data)."""
        path = Path(path)
        crc, size = 0, 0
        with path.open("rb") as source:
            while block := source.read(CHUNK):
                crc = zlib.crc32(block, crc)
                size += len(block)
        dos_time, dos_date = _dos_datetime(path.stat().st_mtime)
        encoded = name.encode()
        header_offset = self._offset
        local_extra = struct.pack("<HHQQ", 0x0001, 16, size, size)
        self._write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                _VERSION,
                _UTF8,
                0,
                dos_time,
                dos_date,
                crc,
                _MAX32,
                _MAX32,
                len(encoded),
                len(local_extra),
            )
            + encoded
            + local_extra
        )
        with path.open("rb") as source:
            while block := source.read(CHUNK):
                self._write(block)
        central_extra = struct.pack("<HHQQQ", 0x0001, 24, size, size, header_offset)
        self._central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | _VERSION,
                _VERSION,
                _UTF8,
                0,
                dos_time,
                dos_date,
                crc,
                _MAX32,
                _MAX32,
                len(encoded),
                len(central_extra),
                0,
                0,
                0,
                0o100644 << 16,
                _MAX32,
            )
            + encoded
            + central_extra
        )

    def close(self) -> None:
        """Write the central directory and the ZIP64 end records; the sink stays open."""
        start = self._offset
        for entry in self._central:
            self._write(entry)
        size = self._offset - start
        count = len(self._central)
        end64 = self._offset
        self._write(
            struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _VERSION, _VERSION, 0, 0, count, count, size, start)
        )
        self._write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        self._write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), _MAX32, _MAX32, 0
            )
        )

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._offset += len(data)


def _dos_datetime(timestamp: float) -> tuple[int, int]:
    t = time.localtime(max(timestamp, 315532800))  # DOS dates start in 1980
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date
