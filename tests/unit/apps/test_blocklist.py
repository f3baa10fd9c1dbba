from __future__ import annotations

import pytest

from lumiku.apps.pose_generator import blocklist
from lumiku.apps.pose_generator.blocklist import Blocklist


@pytest.mark.parametrize(
    "text",
    [
        "skill",
        "a skilled dancer showing her skills",
        "Skillful martial artist",
        "killjoy grin",  # one word, not "kill"
        "photo shoot in a bombastic neon studio",
        "assassin-style hoodie",
        "pembunuhannya",  # no stemming: only listed forms are refused
        "Yoga at sunrise on a beach in Bali",
        "",
    ],
)
def test_innocent_text_passes(text: str) -> None:
    assert blocklist.offending(text) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("kill", ["kill"]),
        ("KILL!", ["kill"]),
        ("please... Kill.", ["kill"]),
        ("kill-er move", ["kill"]),
        ("kíll", ["kill"]),  # accents are folded
        ("ｋｉｌｌ", ["kill"]),  # full-width letters are folded
        ("kill3d", ["kill"]),  # digits separate words
        ("a dead body on the floor", ["dead body"]),
        ("dead-body", ["dead body"]),
        ("posing naked, then nude", ["naked", "nude"]),
        ("kill, kill, KILL", ["kill"]),
        ("adegan bunuh diri", ["bunuh", "bunuh diri"]),
        ("Foto BUGIL", ["bugil"]),
        ("membunuh musuh", ["membunuh"]),
    ],
)
def test_blocked_words_are_found_as_words(text: str, found: list[str]) -> None:
    assert blocklist.offending(text) == found


def test_a_list_parses_comments_words_and_phrases() -> None:
    blocked = Blocklist.parse("# comment\n\nFoo\nbar baz\n  # indented comment\nQux-Quux\n")
    assert blocked.single == frozenset({"foo"})
    assert blocked.phrases == frozenset({("bar", "baz"), ("qux", "quux")})
    assert blocked.offending("a bar baz foo qux quux") == ["bar baz", "foo", "qux quux"]
    assert blocked.offending("bar") == []
    assert blocked.offending("foobar barbaz") == []


def test_the_bundled_list_covers_english_and_indonesian() -> None:
    bundled = blocklist.bundled()
    assert {"kill", "murder", "nude", "nazi", "bunuh", "telanjang", "teroris"} <= bundled.single
    assert len(bundled.single) >= 100
    assert "skill" not in bundled.single
