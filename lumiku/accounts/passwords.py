"""The password policy (SPEC §4) and argon2id hashing, always off the event loop.

Policy: 12–128 characters, at least 3 of the 4 classes (lower, upper, digit, symbol), no
run of 3 identical characters, no control character (TAB and newlines included: they
are typing accidents, and a password must be typed again), and neither the password nor
its core (stripped of leading and trailing digits and symbols, so "Password2024!" counts
as "password") in the bundled list of common passwords. Every violated rule is reported
at once. Logging in checks no policy: a password set before a rule existed still works.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import secrets
from typing import TYPE_CHECKING, Final

import attrs
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lumiku.convert import text_problem

if TYPE_CHECKING:
    from lumiku.config import AuthSettings

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 128
_RUN_OF_THREE: Final = re.compile(r"(.)\1\1")
_EDGES: Final = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@functools.cache
def common_passwords() -> frozenset[str]:
    text = (
        importlib.resources.files("lumiku.accounts")
        .joinpath("data/common_passwords.txt")
        .read_text()
    )
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def policy_violations(password: str) -> list[str]:
    """Every rule `password` breaks, as messages for the client (empty when it is fine)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 3:
        problems.append("must mix at least 3 of: lower-case, upper-case, digits, symbols")
    if _RUN_OF_THREE.search(password):
        problems.append("must not repeat a character 3 times in a row")
    bad_text = text_problem(password, one_line=True)
    if bad_text is not None:
        problems.append(bad_text)
    lowered = password.lower()
    if lowered in common_passwords() or _EDGES.sub("", lowered) in common_passwords():
        problems.append("is too common")
    return problems


@functools.cache
def _password_hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


@attrs.define
class Hasher:
    """argon2id hashing and verification; each call runs in a worker thread."""

    time_cost: int
    memory_kib: int
    parallelism: int
    _dummy: str | None = None

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> Hasher:
        return cls(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism)

    @property
    def _hasher(self) -> PasswordHasher:
        return _password_hasher(self.time_cost, self.memory_kib, self.parallelism)

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether `password` matches; False (never an exception) for a malformed hash."""
        return await trio.to_thread.run_sync(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def dummy_hash(self) -> str:
        """A hash no password matches, made once, so an unknown email costs one verification
        like a known one."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(24))
        return self._dummy

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
