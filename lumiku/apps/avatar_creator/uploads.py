"""`POST /projects/{id}/avatars/upload` (SPEC §8.1, §10): an avatar from the user's image.

The image is validated and stored (with its thumbnail) BEFORE the transaction; then ONE
transaction charges `COST_UPLOAD` (0 for enterprise_unlimited, `CreditsPolicy`) and inserts
the avatar, so the charge and the row commit together. When that transaction fails (402
INSUFFICIENT_CREDITS, a database error, cancellation) the stored files are deleted again.

Idempotency-Key works as for generations (SPEC §6), through the same protocol
(`jobs/idempotency.py`): the key is reserved before anything is stored, marked done with the
avatar's id and the charge in the avatar's transaction, and dropped when the upload fails.
A replay answers with the same avatar (read now) and what the first request charged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import attrs
import trio

from lumiku.apps.avatar_creator.requests import COST_UPLOAD
from lumiku.apps.avatar_creator.service import (
    APP_ID,
    CLEANUP_BUDGET_S,
    UPLOAD_REF_TYPE,
    Q,
    avatar_view,
    project_row,
)
from lumiku.credits import ledger
from lumiku.credits.ledger import CreditsPolicy
from lumiku.errors import IdempotencyKeyInUse, NotFound
from lumiku.jobs import idempotency
from lumiku.jobs.models import new_job_id
from lumiku.storage.base import prefix_of
from lumiku.storage.images import store_with_thumbnail

if TYPE_CHECKING:
    from lumiku.accounts.service import User
    from lumiku.apps.avatar_creator.requests import AvatarFields
    from lumiku.db.store import Row, Tx
    from lumiku.deps import Deps
    from lumiku.storage.images import CleanImage, StoredImage


@attrs.frozen
class Uploaded:
    """The answer: the avatar, what was charged, the balance after; `replayed` for a key."""

    avatar: dict[str, Any]
    credit_used: int
    credit_balance: int
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "avatar": self.avatar,
            "credit_used": self.credit_used,
            "credit_balance": self.credit_balance,
        }


@attrs.frozen
class UploadKey:
    key: str
    request_hash: str


async def replay_or_reserve(deps: Deps, user: User, key: UploadKey) -> Uploaded | None:
    """The first answer for this key (a replay), or None once the key is this request's.
    Raises IdempotencyKeyReused (another body), IdempotencyKeyInUse (still processing)."""
    record = await idempotency.reserve(deps.store, user.id, key.key, key.request_hash)
    if record is None:
        return None
    response = record.response
    if response is None or "avatar_id" not in response:
        raise IdempotencyKeyInUse()  # not an upload's key
    avatar = await deps.store.fetch_one(Q.avatar_by_id, UUID(response["avatar_id"]), user.id)
    if avatar is None:
        raise NotFound("The avatar this request made was deleted since.")
    return Uploaded(
        avatar_view(deps, avatar),
        int(response["credit_used"]),
        await ledger.balance(deps.store, user.id),
        replayed=True,
    )


async def drop_key(deps: Deps, user: User, key: UploadKey) -> None:
    """Give the key up after a failed upload (shielded: runs while being cancelled too)."""
    await idempotency.drop(deps.store, user.id, key.key, key.request_hash)


async def upload_avatar(
    deps: Deps,
    user: User,
    project_id: UUID,
    image: CleanImage,
    fields: AvatarFields,
    key: UploadKey | None = None,
) -> Uploaded:
    """Store the validated `image` and its 300×300 thumbnail, then charge and insert the
    avatar in one transaction (see the module docstring). Raises NotFound (project, checked
    before anything is stored) and InsufficientCredits (the files are deleted again)."""
    await project_row(deps, user, project_id)
    avatar_id = new_job_id()
    stored = await store_with_thumbnail(
        deps.storage, image, app=APP_ID, user_id=user.id, group=avatar_id
    )
    cost = CreditsPolicy.from_settings(deps.settings.credits).cost_for(
        user.tags, APP_ID, COST_UPLOAD
    )

    async def work(tx: Tx) -> tuple[Row, int]:
        await ledger.charge(
            tx, user_id=user.id, amount=cost, ref_type=UPLOAD_REF_TYPE, ref_id=str(avatar_id)
        )
        row = await _insert(tx, user, project_id, avatar_id, stored, fields)
        if key is not None:
            response = {"avatar_id": str(avatar_id), "credit_used": cost}
            await idempotency.finish(tx, user.id, key.key, key.request_hash, response=response)
        return row, await ledger.balance(tx, user.id)

    try:
        row, balance = await deps.store.unit(work)
    except BaseException:
        with trio.move_on_after(CLEANUP_BUDGET_S, shield=True):
            await deps.storage.delete_prefix(prefix_of(APP_ID, user.id, avatar_id))
        raise
    return Uploaded(avatar_view(deps, row), cost, balance)


async def _insert(
    tx: Tx, user: User, project_id: UUID, avatar_id: UUID, stored: StoredImage, fields: AvatarFields
) -> Row:
    row = await tx.fetch_one(
        Q.insert_avatar,
        avatar_id,
        user.id,
        project_id,
        fields.name,
        "upload",
        stored.key,
        stored.thumbnail_key,
        stored.width,
        stored.height,
        fields.persona.as_dict(),
        fields.attributes.as_dict(),
        "",
        None,
        None,
        None,
        datetime.now(UTC),
    )
    assert row is not None
    return row
