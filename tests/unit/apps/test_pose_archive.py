"""`export.zip` is written entry by entry (SPEC §8.2: streamed), and reads back."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import trio

from lumiku.apps.pose_generator.archive import stream_zip


class _Storage:
    """Just `get`, counting reads."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads: list[str] = []

    async def get(self, key: str) -> bytes:
        self.reads.append(key)
        return self.objects[key]


async def test_one_chunk_per_entry_then_the_directory() -> None:
    objects = {f"k{i}": bytes([i]) * 50_000 for i in range(3)}
    storage = _Storage(objects)
    when = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)  # zip keeps even seconds
    entries = [(f"pose-v{i}/original.png", f"k{i}", when) for i in range(3)]
    chunks = []
    with trio.fail_after(5):
        async for chunk in stream_zip(storage, entries):  # type: ignore[arg-type]
            chunks.append(chunk)
            # the entry just yielded was read; the next one not yet
            assert len(storage.reads) == min(len(chunks), 3)
    assert len(chunks) == 4
    assert all(50_000 < len(c) < 51_000 for c in chunks[:3])
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [name for name, _, _ in entries]
        assert archive.read("pose-v1/original.png") == objects["k1"]
        assert archive.getinfo("pose-v0/original.png").date_time == (2026, 1, 2, 3, 4, 6)
