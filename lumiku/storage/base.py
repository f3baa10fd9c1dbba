"""The `Storage` protocol and the one place where storage keys are made and checked.

A key names one stored object: `<app>/<user_id>/<id>.<ext>`, optionally with one grouping
segment, `<app>/<user_id>/<group>/<id>.<ext>` (a project or generation id, so that
`delete_prefix` removes a group's files at once). The owner is always the second segment.
`new_key` is the only maker of keys: the id is random, never a client's filename.
`check_key` is the only validator, used by the storage backends and by `GET /files/{key}`:
segments are `[A-Za-z0-9][A-Za-z0-9_-]*`, so `..`, absolute paths, hidden files, NUL,
backslashes and any other odd character are refused before a path is ever built.

The content type of an object follows from its extension (`CONTENT_TYPES`); an extension
outside that table is not a valid key.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Final, Protocol

import attrs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

CONTENT_TYPES: Final = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "zip": "application/zip",
    "json": "application/json",
}
CHUNK_BYTES: Final = 256 * 1024
MAX_KEY_CHARS: Final = 512

_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_KEY: Final = re.compile(
    rf"(?P<app>{_SEGMENT})/(?P<owner>{_SEGMENT})/(?:{_SEGMENT}/)?"
    rf"{_SEGMENT}\.(?P<ext>[a-z0-9]{{1,8}})"
)
_PREFIX: Final = re.compile(rf"{_SEGMENT}/{_SEGMENT}/(?:{_SEGMENT}/)?")
_PART: Final = re.compile(_SEGMENT)


class InvalidKey(ValueError):
    """A string that is not a storage key (or prefix); callers answer 404 or fix a bug."""


@attrs.frozen
class Key:
    """A checked key and what it says: the app, the owner and the content type."""

    value: str
    app: str
    owner: str
    ext: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]

    def __str__(self) -> str:
        return self.value


def check_key(key: str) -> Key:
    """`key` parsed, or `InvalidKey` when it is not exactly a key `new_key` could make."""
    match = _KEY.fullmatch(key) if len(key) <= MAX_KEY_CHARS else None
    if match is None or match["ext"] not in CONTENT_TYPES:
        raise InvalidKey(f"not a storage key: {key[:80]!r}")
    return Key(key, match["app"], match["owner"], match["ext"])


def check_prefix(prefix: str) -> str:
    """`prefix` when it names an owner's or a group's directory (`app/user/` or
    `app/user/group/`), else `InvalidKey`: an app-wide or empty prefix is never deleted."""
    if len(prefix) > MAX_KEY_CHARS or not _PREFIX.fullmatch(prefix):
        raise InvalidKey(f"not a storage prefix: {prefix[:80]!r}")
    return prefix


def new_key(app: str, user_id: object, ext: str, *, group: object | None = None) -> Key:
    """A fresh key `<app>/<user_id>/[<group>/]<random id>.<ext>` for a new object."""
    parts = [app, str(user_id)]
    if group is not None:
        parts.append(str(group))
    for part in parts:
        if not _PART.fullmatch(part):
            raise InvalidKey(f"not a key segment: {part[:80]!r}")
    return check_key("/".join([*parts, f"{uuid.uuid4().hex}.{ext.lower()}"]))


def prefix_of(app: str, user_id: object, group: object | None = None) -> str:
    """The prefix of every key `new_key(app, user_id, ..., group=group)` makes."""
    parts = [app, str(user_id), *([str(group)] if group is not None else [])]
    return check_prefix("/".join(parts) + "/")


@attrs.frozen
class ObjectInfo:
    """What is known about a stored object without reading it."""

    key: str
    size: int
    content_type: str
    etag: str  # strong validator, quoted as it goes in the ETag header: `"..."`
    modified: datetime


class Storage(Protocol):
    """Where uploaded and generated files live (SPEC §10).

    Every method takes a key made by `new_key` and raises `InvalidKey` for anything else;
    backend failures are `StorageError`s (`ObjectMissing` for an absent key, `StorageFull`
    when a write would leave too little space).
    """

    @property
    def name(self) -> str:
        """The backend, for logs and `--check`: `local:/var/lib/lumiku/files`."""
        ...

    async def put(self, key: Key | str, data: bytes, content_type: str) -> ObjectInfo:
        """Store `data` under `key` atomically: readers see the old object or the whole new
        one, never a part. `content_type` must be the key's (its extension's) type."""
        ...

    async def get(self, key: Key | str) -> bytes:
        """The whole object (for small objects: thumbnails, job inputs)."""
        ...

    def stream(
        self, key: Key | str, *, etag: str | None = None, chunk_bytes: int = CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        """The object in chunks of at most `chunk_bytes`. With `etag`, raise `ObjectMissing`
        instead of yielding anything when the object is no longer that version."""
        ...

    async def stat(self, key: Key | str) -> ObjectInfo | None:
        """The object's size, content type, ETag and modification time; None when absent."""
        ...

    async def exists(self, key: Key | str) -> bool: ...

    async def delete(self, key: Key | str) -> bool:
        """Remove the object; False when there was none."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix` (see `check_prefix`); the number removed."""
        ...

    async def usage_bytes(self, prefix: str) -> int:
        """The total size of the objects under `prefix` (see `check_prefix`); 0 for none.
        Walks the prefix: meant for one user's files (the dashboard), not for hot paths."""
        ...
