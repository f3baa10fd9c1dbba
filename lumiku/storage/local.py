"""`LocalStorage`: objects as files under one directory (`storage.path`).

A key maps to the file `<root>/<key>`; `check_key` has refused anything that could leave
the root before a path is built. Writes go to a hidden temporary file (`.<random>.part`)
in the target's directory, which is fsynced, renamed over the target and followed by an
fsync of the directory, so readers see the old object or the whole new one and a crash
leaves at worst a `.part` file (never served: it is not a key). The content type is not
stored: it follows from the key's extension (`base.CONTENT_TYPES`), which `put` checks.
The ETag is derived from the file's inode, size and modification time: a rewrite is a
new file, so it gets a new tag.

Every file operation runs in a worker thread (`trio.to_thread.run_sync`); those threads are
not abandoned on cancellation, so a cancelled `put` still either completes or cleans up.
A write that would leave less than `storage.min_free_bytes` free raises `StorageFull`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, BinaryIO, Final

import trio

from lumiku.errors import ObjectMissing, StorageError, StorageFull
from lumiku.storage.base import CHUNK_BYTES, ObjectInfo, check_key, check_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from lumiku.storage.base import Key

TEMP_PREFIX: Final = "."
TEMP_SUFFIX: Final = ".part"
FULL_RETRY_AFTER_S: Final = 60


class LocalStorage:
    """The `Storage` protocol on a local directory; see the module docstring."""

    def __init__(self, root: str, min_free_bytes: int = 0) -> None:
        self.root = os.path.abspath(root)
        self.min_free_bytes = min_free_bytes

    @property
    def name(self) -> str:
        return f"local:{self.root}"

    def _path(self, key: Key | str) -> tuple[str, str]:
        """(checked key, its file path)."""
        checked = check_key(str(key))
        return checked.value, os.path.join(self.root, *checked.value.split("/"))

    async def put(self, key: Key | str, data: bytes, content_type: str) -> ObjectInfo:
        checked = check_key(str(key))
        if content_type != checked.content_type:
            raise ValueError(
                f"{checked.value} holds {checked.content_type}, not {content_type}: "
                "the extension decides the content type"
            )
        name, path = self._path(checked)
        return await trio.to_thread.run_sync(partial(self._put, name, path, data))

    def _put(self, key: str, path: str, data: bytes) -> ObjectInfo:
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
            self._check_space(parent, len(data))
            try:
                fd, temp = _temp_file(parent)
            except FileNotFoundError:
                # delete_prefix removed the emptied directory between makedirs and here.
                os.makedirs(parent, exist_ok=True)
                fd, temp = _temp_file(parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            _fsync_directory(parent)
            return _info(key, os.stat(path))
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def _check_space(self, directory: str, size: int) -> None:
        free = shutil.disk_usage(directory).free
        if free - size < self.min_free_bytes:
            raise StorageFull(
                FULL_RETRY_AFTER_S,
                f"Storing {size} bytes would leave {max(free - size, 0)} bytes free; "
                f"at least {self.min_free_bytes} must stay free.",
            )

    async def get(self, key: Key | str) -> bytes:
        name, path = self._path(key)
        return await trio.to_thread.run_sync(partial(_read_all, name, path))

    async def stream(
        self, key: Key | str, *, etag: str | None = None, chunk_bytes: int = CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        name, path = self._path(key)
        f = await trio.to_thread.run_sync(partial(_open_version, name, path, etag))
        try:
            while True:
                try:
                    chunk = await trio.to_thread.run_sync(f.read, chunk_bytes)
                except OSError as exc:
                    raise StorageError(f"cannot read {name}: {exc}") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()  # a regular file: closing does not block

    async def stat(self, key: Key | str) -> ObjectInfo | None:
        name, path = self._path(key)
        return await trio.to_thread.run_sync(partial(_stat, name, path))

    async def exists(self, key: Key | str) -> bool:
        return await self.stat(key) is not None

    async def delete(self, key: Key | str) -> bool:
        name, path = self._path(key)
        return await trio.to_thread.run_sync(partial(_unlink, name, path))

    async def delete_prefix(self, prefix: str) -> int:
        checked = check_prefix(prefix)
        directory = os.path.join(self.root, *checked.rstrip("/").split("/"))
        return await trio.to_thread.run_sync(partial(_remove_tree, checked, directory))

    async def usage_bytes(self, prefix: str) -> int:
        checked = check_prefix(prefix)
        directory = os.path.join(self.root, *checked.rstrip("/").split("/"))
        return await trio.to_thread.run_sync(partial(_tree_bytes, checked, directory))


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    version = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return ObjectInfo(
        key=key,
        size=st.st_size,
        content_type=check_key(key).content_type,
        etag=f'"{hashlib.blake2b(version, digest_size=12).hexdigest()}"',
        modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def _stat(key: str, path: str) -> ObjectInfo | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot stat {key}: {exc}") from exc
    return _info(key, st)


def _read_all(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        raise ObjectMissing(f"no object {key}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {key}: {exc}") from exc


def _open_version(key: str, path: str, etag: str | None) -> BinaryIO:
    """The open file of `key`; ObjectMissing when absent or no longer version `etag`."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - the stream closes it
    except (FileNotFoundError, NotADirectoryError):
        raise ObjectMissing(f"no object {key}") from None
    except OSError as exc:
        raise StorageError(f"cannot open {key}: {exc}") from exc
    if etag is not None and _info(key, os.fstat(f.fileno())).etag != etag:
        f.close()
        raise ObjectMissing(f"{key} changed since it was looked up")
    return f


def _unlink(key: str, path: str) -> bool:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise StorageError(f"cannot delete {key}: {exc}") from exc
    return True


def _tree_bytes(prefix: str, directory: str) -> int:
    """The total size of the objects (not temporary files) under `directory`."""
    total = 0
    try:
        for current, _dirs, files in os.walk(directory):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        total += os.stat(os.path.join(current, name)).st_size
    except OSError as exc:
        raise StorageError(f"cannot measure {prefix}: {exc}") from exc
    return total


def _remove_tree(prefix: str, directory: str) -> int:
    """Unlink every file under `directory`, then its emptied directories; the number of
    objects (not temporary files) removed."""
    removed = 0
    try:
        for current, dirs, files in os.walk(directory, topdown=False):
            for name in files:
                if _unlink(name, os.path.join(current, name)) and not name.startswith(TEMP_PREFIX):
                    removed += 1
            for name in dirs:
                with contextlib.suppress(OSError):  # not empty: a put raced us; keep it
                    os.rmdir(os.path.join(current, name))
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    except OSError as exc:
        raise StorageError(f"cannot delete {prefix}: {exc}") from exc
    return removed


def _temp_file(directory: str) -> tuple[int, str]:
    return tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
