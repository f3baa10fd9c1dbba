from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from lumiku.accounts.passwords import Hasher, common_passwords, policy_violations
from lumiku.config import AuthSettings


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("Tr0ub4dor&3xyz", []),
        ("short1A!", ["must be at least 12 characters"]),
        (
            "onlylowercaseletters",
            ["must mix at least 3 of: lower-case, upper-case, digits, symbols"],
        ),
        ("Abcdefghijk1111", ["must not repeat a character 3 times in a row"]),
        ("Password2024!", ["is too common"]),
        ("!!Qwertyuiop99", ["is too common"]),
        ("Tr0ub4dor&3\txyz", ["must not contain control characters (it holds U+0009)"]),
        ("Tr0ub4dor&3xyz\n", ["must not contain control characters (it holds U+000A)"]),
        ("Tr0ub4dor&3\x00xyz", ["must not contain control characters (it holds U+0000)"]),
        (
            "Tr0ub4dor&3\ud800xyz",
            ["must be valid Unicode text (it holds a lone surrogate, U+D800)"],
        ),
    ],
)
def test_policy(password: str, expected: list[str]) -> None:
    assert policy_violations(password) == expected


def test_every_violation_is_reported_at_once() -> None:
    assert len(policy_violations("aaa")) == 3
    assert len(policy_violations("a" * 129)) == 3  # too long, one class, a run


def test_the_bundled_list_is_loaded_lower_case() -> None:
    words = common_passwords()
    assert "password" in words
    assert all(w == w.lower() for w in words)


@given(st.text(min_size=1, max_size=200))
def test_policy_never_crashes_and_length_rules_match(password: str) -> None:
    problems = policy_violations(password)
    assert ("must be at least 12 characters" in problems) == (len(password) < 12)
    assert ("must be at most 128 characters" in problems) == (len(password) > 128)


@given(
    st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=12, max_size=40)
)
def test_any_run_of_three_is_refused(base: str) -> None:
    password = base[:5] + "xxx" + base[5:]
    assert "must not repeat a character 3 times in a row" in policy_violations(password)


async def test_default_hasher_is_argon2id_and_verifies() -> None:
    hasher = Hasher.from_settings(AuthSettings())
    stored = await hasher.hash("Tr0ub4dor&3xyz")
    assert stored.startswith("$argon2id$")
    assert "m=65536,t=3,p=4" in stored
    assert await hasher.verify(stored, "Tr0ub4dor&3xyz")
    assert not await hasher.verify(stored, "Tr0ub4dor&3xyZ")
    assert not await hasher.verify("not-a-hash", "anything")
    assert not hasher.needs_rehash(stored)


async def test_weaker_parameters_need_a_rehash() -> None:
    cheap = Hasher(1, 1024, 1)
    stored = await cheap.hash("Tr0ub4dor&3xyz")
    assert Hasher.from_settings(AuthSettings()).needs_rehash(stored)


async def test_the_dummy_hash_matches_nothing_and_is_made_once() -> None:
    hasher = Hasher(1, 1024, 1)
    first = await hasher.dummy_hash()
    assert await hasher.dummy_hash() is first
    assert not await hasher.verify(first, "")


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = Hasher.from_settings(AuthSettings())
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await hasher.hash("Tr0ub4dor&3xyz")
        nursery.cancel_scope.cancel()
    assert ticks > 10  # the loop kept running while argon2 worked
