"""Storage keys and `LocalStorage`: atomic writes, reads, prefixes, free space."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from lumiku.config import StorageSettings
from lumiku.errors import ObjectMissing, StorageError, StorageFull
from lumiku.storage import open_storage
from lumiku.storage.base import InvalidKey, check_key, check_prefix, new_key, prefix_of
from lumiku.storage.local import LocalStorage

USER = "0b7d3c1e-9f4a-4c59-8c71-2f0e6a1d5b90"
PNG = "image/png"


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(str(tmp_path / "files"))


# --- keys -----------------------------------------------------------------------------------


def test_new_key_is_random_and_names_app_owner_and_type() -> None:
    first, second = new_key("avatar-creator", USER, "PNG"), new_key("avatar-creator", USER, "png")
    assert first != second
    assert first.value.startswith(f"avatar-creator/{USER}/")
    assert first.value.endswith(".png")
    assert (first.app, first.owner, first.content_type) == ("avatar-creator", USER, PNG)
    assert check_key(first.value) == first
    grouped = new_key("pose-generator", USER, "jpg", group="gen-1")
    assert grouped.value.startswith(f"pose-generator/{USER}/gen-1/")
    assert grouped.owner == USER
    assert prefix_of("pose-generator", USER, "gen-1") == f"pose-generator/{USER}/gen-1/"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a.png",
        "app/x.png",
        f"../{USER}/x.png",
        f"app/../{USER}/x.png",
        f"/app/{USER}/x.png",
        f"app/{USER}/../x.png",
        f"app/{USER}/..png",
        f"app/{USER}/.hidden.png",
        f"app/{USER}/x.png/",
        f"app/{USER}/x.png\n",
        f"app/{USER}/x\x00.png",
        f"app\\{USER}\\x.png",
        f"app//{USER}/x.png",
        f"app/{USER}/x.exe",
        f"app/{USER}/x.PNG",
        f"app/{USER}/x",
        f"app/{USER}/a/b/x.png",
        f"app/{USER}/x%2e.png",
        f"app/{USER}/ü.png",
        f"app/{USER}/" + "x" * 129 + ".png",
    ],
)
def test_check_key_refuses_anything_but_a_key(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


@pytest.mark.parametrize("segment", ["..", "a/b", "", ".x", "a b"])
def test_new_key_refuses_odd_segments(segment: str) -> None:
    with pytest.raises(InvalidKey):
        new_key(segment, USER, "png")
    with pytest.raises(InvalidKey):
        new_key("app", USER, "png", group=segment)


@pytest.mark.parametrize("prefix", ["", "/", "app/", "app", f"app/{USER}", f"app/../{USER}/"])
def test_only_owner_or_group_prefixes_are_accepted(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        check_prefix(prefix)


# --- LocalStorage ---------------------------------------------------------------------------


async def test_put_then_read_back(storage: LocalStorage) -> None:
    key = new_key("test", USER, "png")
    with trio.fail_after(10):
        info = await storage.put(key, b"\x89PNG-bytes", PNG)
        assert await storage.get(key) == b"\x89PNG-bytes"
        assert await storage.stat(key) == info
        assert await storage.exists(key.value)
    assert (info.key, info.size, info.content_type) == (key.value, 10, PNG)
    assert info.etag.startswith('"')
    assert info.etag.endswith('"')
    assert abs((info.modified - datetime.now(UTC)).total_seconds()) < 60
    assert Path(storage.root, *key.value.split("/")).read_bytes() == b"\x89PNG-bytes"


async def test_put_refuses_a_content_type_other_than_the_extensions(
    storage: LocalStorage, tmp_path: Path
) -> None:
    with trio.fail_after(10), pytest.raises(ValueError, match="extension decides"):
        await storage.put(new_key("test", USER, "png"), b"x", "text/html")
    assert files_under(tmp_path) == []


async def test_put_replaces_atomically_and_leaves_no_temporary_files(
    storage: LocalStorage, tmp_path: Path
) -> None:
    key = new_key("test", USER, "jpg")
    with trio.fail_after(10):
        first = await storage.put(key, b"old" * 1000, "image/jpeg")
        second = await storage.put(key, b"new", "image/jpeg")
        assert await storage.get(key) == b"new"
    assert second.etag != first.etag
    assert files_under(tmp_path) == [f"files/{key.value}"]


async def test_a_failed_write_keeps_the_old_object_and_cleans_up(
    storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key("test", USER, "png")
    with trio.fail_after(10):
        await storage.put(key, b"complete", PNG)

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "I/O error")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(StorageError, match="I/O error"):
            await storage.put(key, b"half-written", PNG)
        monkeypatch.undo()
        assert await storage.get(key) == b"complete"
    assert files_under(tmp_path) == [f"files/{key.value}"]


async def test_a_write_below_the_free_space_floor_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path / "files"), min_free_bytes=2**62)
    with trio.fail_after(10), pytest.raises(StorageFull) as caught:
        await storage.put(new_key("test", USER, "png"), b"x" * 100, PNG)
    assert (caught.value.status, caught.value.code) == (507, "INSUFFICIENT_STORAGE")
    assert isinstance(caught.value, StorageError)
    assert files_under(tmp_path) == []


async def test_the_free_space_floor_counts_the_new_object(tmp_path: Path) -> None:
    # The floor is 1 MiB below today's free space: a 64 MiB object would cross it (unless
    # the disk gained 63 MiB between the two calls).
    (tmp_path / "files").mkdir()
    free = shutil.disk_usage(tmp_path / "files").free
    storage = LocalStorage(str(tmp_path / "files"), min_free_bytes=max(free - 2**20, 0))
    with trio.fail_after(10), pytest.raises(StorageFull):
        await storage.put(new_key("test", USER, "png"), bytes(64 * 2**20), PNG)
    assert files_under(tmp_path) == []


async def test_stream_yields_bounded_chunks(storage: LocalStorage) -> None:
    key = new_key("test", USER, "png")
    data = os.urandom(100_000)
    with trio.fail_after(10):
        info = await storage.put(key, data, PNG)
        chunks = [chunk async for chunk in storage.stream(key, etag=info.etag, chunk_bytes=8192)]
    assert max(len(chunk) for chunk in chunks) == 8192
    assert len(chunks) == 13
    assert b"".join(chunks) == data


async def test_stream_refuses_a_missing_or_replaced_object(storage: LocalStorage) -> None:
    key = new_key("test", USER, "png")
    with trio.fail_after(10):
        with pytest.raises(ObjectMissing):
            await anext(storage.stream(key))
        old = await storage.put(key, b"one", PNG)
        await storage.put(key, b"two", PNG)
        with pytest.raises(ObjectMissing, match="changed"):
            await anext(storage.stream(key, etag=old.etag))
        with pytest.raises(ObjectMissing):
            await storage.get(new_key("test", USER, "png"))


async def test_missing_objects(storage: LocalStorage) -> None:
    key = new_key("test", USER, "png")
    with trio.fail_after(10):
        assert await storage.stat(key) is None
        assert not await storage.exists(key)
        assert await storage.delete(key) is False
        await storage.put(key, b"x", PNG)
        assert await storage.delete(key) is True
        assert await storage.stat(key) is None


async def test_every_method_refuses_an_invalid_key(storage: LocalStorage) -> None:
    bad = f"test/{USER}/../../../etc/passwd.png"
    with trio.fail_after(10):
        with pytest.raises(InvalidKey):
            await storage.put(bad, b"x", PNG)
        with pytest.raises(InvalidKey):
            await storage.get(bad)
        with pytest.raises(InvalidKey):
            await storage.stat(bad)
        with pytest.raises(InvalidKey):
            await storage.delete(bad)
        with pytest.raises(InvalidKey):
            await anext(storage.stream(bad))


async def test_delete_prefix_removes_a_users_or_a_groups_objects_only(
    storage: LocalStorage, tmp_path: Path
) -> None:
    other = "5e2d1c0b-aaaa-4bbb-8ccc-0123456789ab"
    with trio.fail_after(10):
        mine = [new_key("test", USER, "png"), new_key("test", USER, "png")]
        grouped = [
            new_key("test", USER, "png", group="p1"),
            new_key("test", USER, "png", group="p2"),
        ]
        theirs = new_key("test", other, "png")
        elsewhere = new_key("other-app", USER, "png")
        for key in [*mine, *grouped, theirs, elsewhere]:
            await storage.put(key, b"x", PNG)

        assert await storage.delete_prefix(prefix_of("test", USER, "p1")) == 1
        assert not await storage.exists(grouped[0])
        assert await storage.exists(grouped[1])

        assert await storage.delete_prefix(prefix_of("test", USER)) == 3
        assert await storage.delete_prefix(prefix_of("test", USER)) == 0
    assert files_under(tmp_path) == sorted(f"files/{k.value}" for k in (theirs, elsewhere))
    assert not (tmp_path / "files" / "test" / USER).exists()


async def test_usage_bytes_sums_a_users_objects_only(storage: LocalStorage) -> None:
    other = "5e2d1c0b-aaaa-4bbb-8ccc-0123456789ab"
    with trio.fail_after(10):
        assert await storage.usage_bytes(prefix_of("test", USER)) == 0
        await storage.put(new_key("test", USER, "png"), b"x" * 10, PNG)
        await storage.put(new_key("test", USER, "png", group="p1"), b"x" * 5, PNG)
        await storage.put(new_key("test", other, "png"), b"x" * 7, PNG)
        await storage.put(new_key("other-app", USER, "png"), b"x" * 3, PNG)
        assert await storage.usage_bytes(prefix_of("test", USER)) == 15
        assert await storage.usage_bytes(prefix_of("test", USER, "p1")) == 5
        with pytest.raises(InvalidKey):
            await storage.usage_bytes("test/")


async def test_delete_prefix_refuses_wide_prefixes(storage: LocalStorage) -> None:
    with trio.fail_after(10), pytest.raises(InvalidKey):
        await storage.delete_prefix("test/")


async def test_open_storage_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    with trio.fail_after(10):
        async with open_storage(StorageSettings(path=str(path))) as storage:
            assert storage.name == f"local:{path}"
    assert path.is_dir()


async def test_open_storage_fails_on_an_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with trio.fail_after(10), pytest.raises(StorageError, match=r"storage\.path"):
        async with open_storage(StorageSettings(path=str(blocker / "files"))):
            pass
