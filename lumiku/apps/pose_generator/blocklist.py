"""The prompt blocklist (SPEC §8.2, §16): whole words and phrases, never substrings.

Text is folded before matching: Unicode compatibility forms (full-width letters, ligatures)
are normalised, accents dropped and case folded; then it is split into words at every
character that is not a letter, so digits, hyphens, apostrophes and punctuation all separate
words. Hence "KILL!", "kill-er", "kíll" and "ｋｉｌｌ" all contain the word "kill", while
"skill" and "skilled" do not. Leetspeak is not decoded ("k1ll" is the words "k" and "ll"):
a list cannot win that race, and guessing would refuse innocent prompts. An entry with
spaces (`bunuh diri`) matches those words in a row. There is no stemming: each inflected
form a list wants to refuse is listed (`killing`, `membunuh`).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from lumiku.apps.fields import Problems

_WORD: Final = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    """The folded words of `text`, in order."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(stripped.casefold())


@attrs.frozen
class Blocklist:
    """Single words and phrases (tuples of two or more words) that are refused."""

    single: frozenset[str]
    phrases: frozenset[tuple[str, ...]]
    longest: int

    @classmethod
    def parse(cls, text: str) -> Blocklist:
        """One entry per line; blank lines and `#` comments are skipped."""
        single: set[str] = set()
        phrases: set[tuple[str, ...]] = set()
        for line in text.splitlines():
            entry = tuple(words(line)) if not line.lstrip().startswith("#") else ()
            if len(entry) == 1:
                single.add(entry[0])
            elif entry:
                phrases.add(entry)
        return cls(frozenset(single), frozenset(phrases), max(map(len, phrases), default=1))

    def offending(self, text: str) -> list[str]:
        """The blocked words and phrases in `text`, folded, each once, in order of appearance."""
        found: dict[str, None] = {}
        tokens = words(text)
        for start, token in enumerate(tokens):
            if token in self.single:
                found[token] = None
            for size in range(2, min(self.longest, len(tokens) - start) + 1):
                phrase = tuple(tokens[start : start + size])
                if phrase in self.phrases:
                    found[" ".join(phrase)] = None
        return list(found)


@functools.cache
def bundled() -> Blocklist:
    """The blocklist shipped in `data/blocklist.txt`, read once."""
    text = (
        importlib.resources.files("lumiku.apps.pose_generator")
        .joinpath("data/blocklist.txt")
        .read_text(encoding="utf-8")
    )
    return Blocklist.parse(text)


def offending(text: str) -> list[str]:
    """The bundled blocklist's words and phrases found in `text` (empty when it is fine)."""
    return bundled().offending(text)


def check(problems: Problems, field: str, text: str | None) -> None:
    """Record a problem on `field` naming the blocked words in `text`, if there are any."""
    found = offending(text) if text else []
    if found:
        problems.add(field, f"contains words that are not allowed: {', '.join(found)}")
