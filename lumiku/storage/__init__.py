"""Files (SPEC §10): where they are stored, how uploads are checked, how they are served.

`base` (the `Storage` protocol, keys), `local` (the local-directory backend), `images`
(upload validation, re-encoding, thumbnails), `signing` (expiring signed URLs).
`open_storage(settings.storage)` is what the supervisor opens.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial
from typing import TYPE_CHECKING

import trio

from lumiku.errors import StorageError
from lumiku.storage.local import LocalStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from lumiku.config import StorageSettings
    from lumiku.storage.base import Storage


@contextlib.asynccontextmanager
async def open_storage(settings: StorageSettings) -> AsyncIterator[Storage]:
    """The configured storage: a `LocalStorage` on `storage.path` (created when missing).

    An unusable directory raises `StorageError` here, failing the start rather than the
    first upload. Nothing to close.
    """
    try:
        await trio.to_thread.run_sync(partial(os.makedirs, settings.path, exist_ok=True))
    except OSError as exc:
        raise StorageError(f"cannot create storage.path {settings.path}: {exc}") from exc
    yield LocalStorage(settings.path, settings.min_free_bytes)
