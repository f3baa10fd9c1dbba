"""Idempotency-Key reservations (SPEC §6, §12): the one protocol behind every route that
takes a key, JSON (`submit_job`) and multipart (Avatar Creator's upload) alike.

`http/idempotency.py` reads the header and hashes the request; this module owns the
`idempotency_keys` rows:

1. `reserve` writes the key as `processing` in a short transaction of its own, BEFORE the
   work; the `(user_id, key)` primary key decides a race between two requests carrying the
   same key. The loser sees the winner's row: `IdempotencyKeyInUse` (409) while it
   processes, its `KeyRecord` to replay once done, `IdempotencyKeyReused` (422) for another
   body. An expired key, or one left `processing` by a request that died
   (`KEY_ABANDONED_S`), is taken over.
2. `finish` marks the key `done` with what to replay (the job id and/or a response), in the
   transaction of the work itself, so the key and the work commit together.
3. `drop` gives the key up when the work failed, so the client may try again.
4. `purge` deletes expired keys (the reaper calls it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from lumiku.db.queries import load_queries
from lumiku.errors import IdempotencyKeyInUse, IdempotencyKeyReused

if TYPE_CHECKING:
    from uuid import UUID

    from lumiku.db.store import Store, Tx

Q: Final = load_queries("lumiku.jobs")

KEY_MAX: Final = 255
KEY_TTL: Final = timedelta(hours=24)
# A key still `processing` this long after it was taken belongs to a request that died.
KEY_ABANDONED_S: Final = 60.0
# A reservation can lose to a key that vanishes meanwhile (its request failed); try again.
_RESERVE_TRIES: Final = 3
_DROP_TIMEOUT_S: Final = 10.0


@attrs.frozen
class KeyRecord:
    """What the key's first request recorded when it finished: its job and/or response."""

    job_id: UUID | None
    response: Mapping[str, Any] | None


async def reserve(store: Store, user_id: UUID, key: str, request_hash: str) -> KeyRecord | None:
    """Take the key for this request (None), or the first request's record to replay.

    Raises IdempotencyKeyReused (the key came with another request hash) and
    IdempotencyKeyInUse (its first request is still being processed).
    """
    for _ in range(_RESERVE_TRIES):
        now = datetime.now(UTC)
        abandoned = now - timedelta(seconds=KEY_ABANDONED_S)
        taken = await store.fetch_val(
            Q.reserve_key, user_id, key, request_hash, now, now + KEY_TTL, abandoned
        )
        if taken is not None:
            return None
        row = await store.fetch_one(Q.key_by_id, user_id, key)
        if row is None:
            continue  # its request failed and dropped it meanwhile
        if row["request_hash"] != request_hash:
            raise IdempotencyKeyReused()
        if row["status"] != "done":
            raise IdempotencyKeyInUse()
        response = row["response"]
        return KeyRecord(row["job_id"], response if isinstance(response, Mapping) else None)
    raise IdempotencyKeyInUse()


async def finish(
    tx: Tx,
    user_id: UUID,
    key: str,
    request_hash: str,
    *,
    job_id: UUID | None = None,
    response: Mapping[str, Any] | None = None,
) -> bool:
    """Mark the key done with what a replay answers, in the work's transaction; False when
    the key is no longer this request's (taken over as abandoned while it ran)."""
    marked = await tx.execute(Q.finish_key, user_id, key, request_hash, job_id, response)
    return bool(marked)


async def drop(store: Store, user_id: UUID, key: str, request_hash: str) -> None:
    """Give the key up after the work failed. Shielded and bounded: it runs while the
    request is being cancelled too."""
    with trio.move_on_after(_DROP_TIMEOUT_S, shield=True):
        await store.execute(Q.drop_key, user_id, key, request_hash)


async def purge(store: Store, now: datetime) -> int:
    """Delete the keys expired at `now`; returns how many. Jobs are kept."""
    return await store.execute(Q.purge_keys, now)
