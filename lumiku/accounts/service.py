"""Accounts (SPEC §4): register, log in, authenticate a token, read and change a profile.

Every function takes `Deps`; passwords are hashed and verified in worker threads. Login
failures are counted per email in the shared counters (Redis when configured), so the
lockout holds across instances; an unknown email costs the same argon2 verification as a
wrong password, so timing does not tell which it was.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.accounts import tokens
from lumiku.accounts.passwords import policy_violations
from lumiku.convert import text_problem
from lumiku.credits import ledger
from lumiku.db.queries import load_queries
from lumiku.errors import (
    AccountLocked,
    EmailTaken,
    FieldError,
    InvalidCredentials,
    NotFound,
    RateLimiterUnavailable,
    RedisUnavailable,
    Unauthorized,
    UniqueViolation,
    ValidationFailed,
)
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from lumiku.db.store import Executor
    from lumiku.deps import Deps

log = get_logger(__name__)
Q: Final = load_queries("lumiku.accounts")

ROLES: Final = ("user", "admin")
EMAIL_MAX: Final = 254
NAME_MAX: Final = 100
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@attrs.frozen
class User:
    id: uuid.UUID
    email: str
    name: str
    role: str
    tags: frozenset[str]
    token_version: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> User:
        return cls(
            id=row["id"],
            email=row["email"],
            name=row["name"],
            role=row["role"],
            tags=frozenset(row["tags"] or ()),
            token_version=row["token_version"],
            created_at=row["created_at"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "tags": sorted(self.tags),
            "created_at": self.created_at.isoformat(),
        }


@attrs.frozen
class Session:
    """A user with a fresh token, as register, login and a password change answer."""

    user: User
    token: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _email_problems(email: str) -> list[FieldError]:
    """An email is one line: no whitespace, no control character, no lone surrogate."""
    bad_text = text_problem(email, one_line=True)
    if bad_text is not None:
        return [FieldError("email", bad_text)]
    if len(email) > EMAIL_MAX or not _EMAIL.match(email):
        return [FieldError("email", "must be a valid email address")]
    return []


def _clean_name(name: str | None) -> tuple[str, list[FieldError]]:
    """The name with whitespace (TAB and newlines included) collapsed to single spaces."""
    cleaned = " ".join((name or "").split())
    bad_text = text_problem(cleaned)
    if bad_text is not None:
        return cleaned, [FieldError("name", bad_text)]
    if len(cleaned) > NAME_MAX:
        return cleaned, [FieldError("name", f"must be at most {NAME_MAX} characters")]
    return cleaned, []


def _password_problems(password: str, field: str = "password") -> list[FieldError]:
    return [FieldError(field, message) for message in policy_violations(password)]


def _now() -> datetime:
    return datetime.now(UTC)


def _issue(deps: Deps, user: User) -> str:
    auth = deps.settings.auth
    return tokens.issue(
        auth.jwt_secret,
        user_id=user.id,
        email=user.email,
        version=user.token_version,
        ttl_s=auth.token_ttl_s,
    )


async def create_user(
    deps: Deps,
    *,
    email: str,
    password: str,
    name: str | None = None,
    role: str = "user",
    credits: int | None = None,
) -> User:
    """Validate and insert a user with its credit account and opening grant, in one transaction.

    `credits` defaults to the welcome bonus (a `welcome` entry); operators may pass another
    amount (a `grant` entry). Raises ValidationFailed (every problem), EmailTaken.
    """
    email = normalize_email(email)
    cleaned_name, problems = _clean_name(name)
    problems = [*_email_problems(email), *_password_problems(password), *problems]
    if role not in ROLES:
        problems.append(FieldError("role", f"must be one of {', '.join(ROLES)}"))
    if credits is not None and credits < 0:
        problems.append(FieldError("credits", "must be >= 0"))
    if problems:
        raise ValidationFailed(problems)
    password_hash = await deps.hasher.hash(password)
    user_id = uuid.uuid4()
    welcome = credits is None
    amount = deps.settings.credits.welcome_bonus if welcome else credits
    try:
        async with deps.store.transaction() as tx:
            row = await tx.fetch_one(
                Q.insert_user, user_id, email, password_hash, cleaned_name, role, [], _now()
            )
            await ledger.open_account(tx, user_id)
            if amount:
                await ledger.grant(
                    tx,
                    user_id=user_id,
                    amount=amount,
                    kind="welcome" if welcome else "grant",
                    ref_type="user",
                    ref_id=str(user_id),
                    note="welcome bonus" if welcome else "opening grant",
                )
    except UniqueViolation:
        raise EmailTaken() from None
    assert row is not None
    user = User.from_row(row)
    log.info("accounts.created", user_id=str(user.id), role=role)
    return user


async def register(deps: Deps, *, email: str, password: str, name: str | None) -> Session:
    user = await create_user(deps, email=email, password=password, name=name)
    return Session(user, _issue(deps, user))


def _lockout_key(email: str) -> str:
    return "lockout:" + hashlib.sha256(email.encode()).hexdigest()[:32]


async def login(deps: Deps, *, email: str, password: str) -> Session:
    """A session for the right password; InvalidCredentials (same answer for an unknown email)
    or AccountLocked after `auth.lockout_failures` failures within the window."""
    email = normalize_email(email)
    auth = deps.settings.auth
    key = _lockout_key(email)
    try:
        window = await deps.counters.peek(key)
    except RedisUnavailable:
        raise RateLimiterUnavailable() from None  # the lockout fails closed
    if window.count >= auth.lockout_failures:
        raise AccountLocked(retry_after_s=max(1, math.ceil(window.reset_s)))
    row = await deps.store.fetch_one(Q.user_by_email, email)
    stored_hash = row["password_hash"] if row is not None else await deps.hasher.dummy_hash()
    if not await deps.hasher.verify(stored_hash, password) or row is None:
        try:
            failures = await deps.counters.hit(key, auth.lockout_window_s)
        except RedisUnavailable:
            raise RateLimiterUnavailable() from None
        log.warning("accounts.login_failed", failures=failures.count, known_email=row is not None)
        raise InvalidCredentials()
    await deps.counters.clear(key)
    if deps.hasher.needs_rehash(stored_hash):
        await deps.store.execute(
            Q.rehash_password, row["id"], await deps.hasher.hash(password), stored_hash
        )
    await deps.store.execute(Q.record_login, row["id"], _now())
    user = User.from_row(row)
    return Session(user, _issue(deps, user))


async def previous_login(deps: Deps, user_id: uuid.UUID) -> datetime | None:
    """When the user logged in before their latest login (None before a second login):
    what the dashboard calls `last_login_at`."""
    value: datetime | None = await deps.store.fetch_val(Q.previous_login, user_id)
    return value


async def authenticate(deps: Deps, token: str | None) -> User:
    """The user a token belongs to; Unauthorized when missing, invalid, expired or stale."""
    if not token:
        raise Unauthorized("Authentication required.")
    claims = tokens.decode(deps.settings.auth.jwt_secret, token)
    row = await deps.store.fetch_one(Q.user_by_id, claims.user_id)
    if row is None or row["token_version"] != claims.version:
        raise Unauthorized("Invalid token.")
    return User.from_row(row)


async def find_user(
    executor: Executor, *, user_id: uuid.UUID | None = None, email: str | None = None
) -> User:
    row = (
        await executor.fetch_one(Q.user_by_id, user_id)
        if user_id is not None
        else await executor.fetch_one(Q.user_by_email, normalize_email(email or ""))
    )
    if row is None:
        raise NotFound("No such user.")
    return User.from_row(row)


TAG_MAX: Final = 50
_TAG: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


async def change_tags(
    deps: Deps, *, email: str, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> User:
    """Add and remove tags (lower-case `[a-z0-9_.-]`, at most 50 chars) of the user with
    `email`, in one transaction. Raises ValidationFailed, NotFound."""
    add, remove = [t.strip().lower() for t in add], [t.strip().lower() for t in remove]
    bad = [t for t in (*add, *remove) if len(t) > TAG_MAX or not _TAG.match(t)]
    if bad:
        raise ValidationFailed([FieldError("tags", f"{t!r} is not a valid tag") for t in bad])
    async with deps.store.transaction() as tx:
        user = await find_user(tx, email=email)
        tags = sorted((user.tags | set(add)) - set(remove))
        row = await tx.fetch_one(Q.set_tags, user.id, tags, _now())
    assert row is not None
    changed = User.from_row(row)
    log.info("accounts.tags_changed", user_id=str(changed.id), tags=sorted(changed.tags))
    return changed


@attrs.frozen
class ProfileChanges:
    name: str | None = None
    email: str | None = None
    current_password: str | None = None
    new_password: str | None = None


async def update_profile(deps: Deps, user: User, changes: ProfileChanges) -> Session:
    """Apply `changes`; a new email or password needs the current password. A password
    change bumps the token version (older tokens stop working) and returns a new token."""
    name, problems = _clean_name(changes.name if changes.name is not None else user.name)
    email = normalize_email(changes.email) if changes.email is not None else user.email
    problems += _email_problems(email)
    if changes.new_password is not None:
        problems += _password_problems(changes.new_password, "new_password")
    sensitive = email != user.email or changes.new_password is not None
    if sensitive and not changes.current_password:
        problems.append(FieldError("current_password", "is required to change email or password"))
    if problems:
        raise ValidationFailed(problems)
    row = await deps.store.fetch_one(Q.user_by_id, user.id)
    if row is None:
        raise Unauthorized("Invalid token.")
    if sensitive and not await deps.hasher.verify(
        row["password_hash"], changes.current_password or ""
    ):
        raise ValidationFailed([FieldError("current_password", "is incorrect")])
    new_hash = await deps.hasher.hash(changes.new_password) if changes.new_password else None
    try:
        async with deps.store.transaction() as tx:
            updated = await tx.fetch_one(Q.update_profile, user.id, name, email, _now())
            if new_hash is not None:
                updated = await tx.fetch_one(Q.change_password, user.id, new_hash, _now())
    except UniqueViolation:
        raise EmailTaken() from None
    assert updated is not None
    result = User.from_row(updated)
    if new_hash is not None:
        log.info("accounts.password_changed", user_id=str(user.id))
    return Session(result, _issue(deps, result))
