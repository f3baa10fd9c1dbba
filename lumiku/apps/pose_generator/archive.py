"""`export.zip`, streamed (SPEC §8.2): the archive is written entry by entry into a sink
that hands its bytes on after each entry, so the response holds one stored file at a time,
never the whole archive. Entries are STORED (the images are compressed already), with data
descriptors because the sink cannot seek; `zipfile` reads such archives back.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from lumiku.storage.base import Storage


class _Sink(io.RawIOBase):
    """A write-only, unseekable file: what ZipFile writes, until `take` collects it."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        chunk = bytes(data)  # type: ignore[call-overload]
        self._chunks.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


async def stream_zip(
    storage: Storage, entries: Sequence[tuple[str, str, datetime]]
) -> AsyncIterator[bytes]:
    """The zip of `entries` (name in the archive, storage key, modification time), in
    chunks: one per entry, then the central directory. Reads each object once."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED)
    for name, key, modified in entries:
        data = await storage.get(key)
        stamp = modified.timetuple()[:6]
        info = zipfile.ZipInfo(name, date_time=stamp if stamp[0] >= 1980 else (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, data)
        yield sink.take()
    archive.close()
    yield sink.take()
