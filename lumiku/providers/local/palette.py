"""From free-text words to colours and shapes, deterministically.

Every lookup reads the text's words (lower-case; Indonesian words too) and takes the
longest known phrase: "dark brown" before "brown". A modifier the phrase does not contain
shifts it ("dark blue" = blue, darker; "light green" = green, lighter). Colour words the
tables do not know are tried as CSS colour names ("teal", "navy", "crimson"); anything
else falls back to a pick by hash from a palette of plausible values, so the same text
always gives the same look and nothing is ever refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Final, TypeVar

from PIL import ImageColor

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

RGB = tuple[int, int, int]
T = TypeVar("T")

_WORD: Final = re.compile(r"[^\W\d_]+|\d+")
_DARKER: Final = frozenset({"dark", "deep", "darker", "tua", "gelap"})
_LIGHTER: Final = frozenset({"light", "pale", "bright", "lighter", "muda", "terang"})


def stable_hash(*parts: object) -> int:
    """A hash of `parts`' text that is the same in every process (unlike `hash`)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def pick(options: Sequence[T], *parts: object) -> T:
    return options[stable_hash(*parts) % len(options)]


def words(text: str | None) -> list[str]:
    return _WORD.findall(text.lower()) if text else []


def match_phrase(text: str | None, table: Mapping[str, T]) -> tuple[str, T] | None:
    """The longest phrase of `table` found in `text` as whole words (the earliest of equally
    long ones) and its value, or None."""
    found = words(text)
    best: tuple[int, int, str] | None = None
    for phrase in table:
        parts = phrase.split()
        n = len(parts)
        for start in range(len(found) - n + 1):
            if found[start : start + n] == parts:
                if best is None or n > best[0] or (n == best[0] and start < best[1]):
                    best = (n, start, phrase)
                break
    return None if best is None else (best[2], table[best[2]])


def match(text: str | None, table: Mapping[str, T]) -> T | None:
    """The value of `match_phrase`, or None."""
    found = match_phrase(text, table)
    return None if found is None else found[1]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """`a` moved a fraction `t` of the way to `b`."""
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def shade(color: RGB, factor: float) -> RGB:
    """Darker below 1, lighter (towards white) above 1."""
    if factor <= 1:
        return mix(color, (0, 0, 0), 1 - factor)
    return mix(color, (255, 255, 255), factor - 1)


def css_color(word: str) -> RGB | None:
    try:
        color = ImageColor.getrgb(word)
    except ValueError:
        return None
    return color[0], color[1], color[2]


def named_color(text: str | None, table: Mapping[str, RGB], *, css: bool = True) -> RGB | None:
    """The colour `text` names: a table phrase (with dark/light modifiers), else a CSS
    colour word; None when it names none."""
    found = match_phrase(text, table)
    phrase, color = found if found is not None else ("", None)
    if color is None and css:
        color = next((c for w in words(text) if (c := css_color(w)) is not None), None)
    if color is None:
        return None
    modifiers = set(words(text)) - set(words(phrase))
    if modifiers & _DARKER:
        color = shade(color, 0.72)
    elif modifiers & _LIGHTER:
        color = shade(color, 1.3)
    return color


def color_or_pick(
    text: str | None, table: Mapping[str, RGB], fallback: Sequence[RGB], *salt: object
) -> RGB:
    """`named_color(text)`, else a pick from `fallback` by hash of the text (when given)
    or of `salt` (the seed and friends, when the attribute is absent)."""
    color = named_color(text, table)
    if color is not None:
        return color
    return pick(fallback, text) if text else pick(fallback, *salt)


HAIR_COLORS: Final[Mapping[str, RGB]] = {
    "black": (28, 24, 22),
    "jet black": (12, 12, 14),
    "hitam": (28, 24, 22),
    "dark brown": (58, 38, 26),
    "brown": (96, 62, 38),
    "coklat": (96, 62, 38),
    "cokelat": (96, 62, 38),
    "light brown": (150, 108, 70),
    "chestnut": (120, 60, 35),
    "auburn": (130, 52, 30),
    "red": (170, 54, 28),
    "merah": (170, 54, 28),
    "ginger": (196, 96, 42),
    "copper": (184, 100, 50),
    "strawberry blonde": (214, 150, 100),
    "blonde": (228, 192, 120),
    "blond": (228, 192, 120),
    "pirang": (228, 192, 120),
    "golden": (218, 170, 80),
    "platinum": (236, 228, 210),
    "grey": (152, 152, 150),
    "gray": (152, 152, 150),
    "silver": (196, 198, 202),
    "white": (236, 236, 232),
    "salt and pepper": (112, 110, 108),
    "blue": (40, 90, 200),
    "pink": (236, 120, 170),
    "purple": (120, 60, 160),
    "green": (40, 140, 80),
}
NATURAL_HAIR: Final[Sequence[RGB]] = (
    (28, 24, 22),
    (58, 38, 26),
    (96, 62, 38),
    (150, 108, 70),
    (130, 52, 30),
    (228, 192, 120),
    (40, 30, 26),
    (74, 48, 30),
)
GREY_HAIR: Final[RGB] = (176, 176, 174)

SKIN_TONES: Final[Mapping[str, RGB]] = {
    "porcelain": (250, 226, 212),
    "pale": (246, 222, 204),
    "fair": (240, 208, 184),
    "putih": (240, 208, 184),
    "kuning langsat": (236, 200, 160),
    "light": (232, 196, 168),
    "medium": (206, 160, 122),
    "olive": (196, 156, 110),
    "tan": (190, 140, 100),
    "sawo matang": (176, 124, 84),
    "caramel": (170, 116, 76),
    "brown": (140, 92, 60),
    "dark": (98, 64, 42),
    "gelap": (98, 64, 42),
    "deep": (80, 52, 36),
    "ebony": (62, 42, 30),
}
SKIN_PALETTE: Final[Sequence[RGB]] = (
    (246, 222, 204),
    (240, 208, 184),
    (232, 196, 168),
    (206, 160, 122),
    (196, 156, 110),
    (176, 124, 84),
    (140, 92, 60),
    (98, 64, 42),
    (80, 52, 36),
)

EYE_COLORS: Final[Mapping[str, RGB]] = {
    "brown": (110, 70, 40),
    "coklat": (110, 70, 40),
    "dark brown": (66, 40, 22),
    "black": (34, 26, 22),
    "hitam": (34, 26, 22),
    "hazel": (142, 110, 58),
    "amber": (196, 132, 36),
    "green": (64, 146, 78),
    "hijau": (64, 146, 78),
    "blue": (58, 118, 206),
    "biru": (58, 118, 206),
    "light blue": (124, 174, 232),
    "grey": (128, 140, 150),
    "gray": (128, 140, 150),
    "violet": (132, 88, 182),
}
EYE_PALETTE: Final[Sequence[RGB]] = (
    (110, 70, 40),
    (66, 40, 22),
    (142, 110, 58),
    (64, 146, 78),
    (58, 118, 206),
    (128, 140, 150),
)

CLOTHING_COLORS: Final[Mapping[str, RGB]] = {
    "black": (34, 34, 38),
    "white": (238, 238, 234),
    "navy": (30, 44, 86),
    "red": (186, 40, 46),
    "merah": (186, 40, 46),
    "blue": (46, 96, 186),
    "biru": (46, 96, 186),
    "green": (46, 130, 80),
    "hijau": (46, 130, 80),
    "yellow": (232, 196, 60),
    "kuning": (232, 196, 60),
    "pink": (232, 130, 168),
    "purple": (112, 64, 150),
    "ungu": (112, 64, 150),
    "orange": (230, 124, 40),
    "grey": (120, 122, 128),
    "gray": (120, 122, 128),
    "brown": (110, 74, 46),
    "beige": (216, 198, 164),
    "maroon": (112, 28, 40),
    "teal": (30, 128, 128),
    "gold": (200, 160, 60),
    "emas": (200, 160, 60),
}

# Outfits: how the clothes are drawn, and the colours they come in when none is named.
OUTFIT_WORDS: Final[Mapping[str, str]] = {
    "professional": "suit",
    "business": "suit",
    "formal": "suit",
    "office": "suit",
    "corporate": "suit",
    "executive": "suit",
    "suit": "suit",
    "kantor": "suit",
    "casual": "tee",
    "everyday": "tee",
    "santai": "tee",
    "t shirt": "tee",
    "tshirt": "tee",
    "sports": "jersey",
    "sport": "jersey",
    "sporty": "jersey",
    "athletic": "jersey",
    "gym": "jersey",
    "fitness": "jersey",
    "olahraga": "jersey",
    "jersey": "jersey",
    "fashion": "fashion",
    "elegant": "fashion",
    "glamour": "fashion",
    "glam": "fashion",
    "chic": "fashion",
    "trendy": "fashion",
    "dress": "fashion",
    "traditional": "batik",
    "batik": "batik",
    "kebaya": "batik",
    "ethnic": "batik",
    "adat": "batik",
    "tradisional": "batik",
    "streetwear": "hoodie",
    "street": "hoodie",
    "hoodie": "hoodie",
    "urban": "hoodie",
}
OUTFITS: Final = ("suit", "tee", "jersey", "fashion", "batik", "hoodie")
OUTFIT_PALETTES: Final[Mapping[str, Sequence[RGB]]] = {
    "suit": ((34, 38, 48), (44, 56, 86), (70, 72, 78), (60, 44, 36)),
    "tee": ((236, 236, 232), (70, 110, 170), (200, 80, 70), (90, 140, 90), (230, 190, 80)),
    "jersey": ((200, 40, 50), (30, 90, 190), (240, 200, 40), (30, 140, 90)),
    "fashion": ((150, 30, 70), (20, 20, 24), (210, 160, 60), (120, 60, 160), (230, 120, 150)),
    "batik": ((120, 60, 30), (40, 60, 110), (150, 40, 40), (50, 90, 60)),
    "hoodie": ((60, 64, 70), (30, 30, 34), (150, 40, 40), (70, 100, 80), (200, 200, 196)),
}

GENDER_WORDS: Final[Mapping[str, str]] = {
    "male": "male",
    "man": "male",
    "men": "male",
    "boy": "male",
    "masculine": "male",
    "pria": "male",
    "laki": "male",
    "female": "female",
    "woman": "female",
    "women": "female",
    "girl": "female",
    "feminine": "female",
    "wanita": "female",
    "perempuan": "female",
}

AGE_WORDS: Final[Mapping[str, str]] = {
    "young": "young",
    "teen": "young",
    "teenager": "young",
    "youth": "young",
    "child": "young",
    "kid": "young",
    "remaja": "young",
    "muda": "young",
    "adult": "adult",
    "middle": "adult",
    "dewasa": "adult",
    "mature": "mature",
    "old": "mature",
    "older": "mature",
    "elderly": "mature",
    "senior": "mature",
    "aged": "mature",
    "tua": "mature",
    "lansia": "mature",
}

# (shoulder width, waist width) added to the average figure, as fractions of the portrait.
BODY_TYPES: Final[Mapping[str, tuple[float, float]]] = {
    "slim": (-0.045, -0.04),
    "thin": (-0.05, -0.045),
    "slender": (-0.045, -0.04),
    "skinny": (-0.055, -0.05),
    "lean": (-0.03, -0.035),
    "kurus": (-0.05, -0.045),
    "langsing": (-0.045, -0.04),
    "petite": (-0.065, -0.035),
    "small": (-0.055, -0.03),
    "average": (0.0, 0.0),
    "regular": (0.0, 0.0),
    "normal": (0.0, 0.0),
    "medium": (0.0, 0.0),
    "athletic": (0.04, -0.015),
    "fit": (0.035, -0.015),
    "toned": (0.03, -0.01),
    "muscular": (0.07, 0.01),
    "strong": (0.06, 0.01),
    "kekar": (0.07, 0.01),
    "curvy": (0.0, 0.05),
    "plus": (0.05, 0.09),
    "plus size": (0.05, 0.09),
    "heavy": (0.05, 0.09),
    "chubby": (0.04, 0.08),
    "large": (0.05, 0.08),
    "big": (0.05, 0.08),
    "full": (0.03, 0.07),
    "gemuk": (0.05, 0.09),
}
BODY_PALETTE: Final[Sequence[tuple[float, float]]] = tuple(dict.fromkeys(BODY_TYPES.values()))

HAIR_LENGTH_WORDS: Final[Mapping[str, str]] = {
    "bald": "bald",
    "botak": "bald",
    "shaved": "buzz",
    "buzz": "buzz",
    "buzzcut": "buzz",
    "buzz cut": "buzz",
    "crew cut": "buzz",
    "short": "short",
    "pendek": "short",
    "pixie": "short",
    "cropped": "short",
    "undercut": "short",
    "bob": "medium",
    "medium": "medium",
    "shoulder": "medium",
    "sebahu": "medium",
    "long": "long",
    "panjang": "long",
}
HAIR_TEXTURE_WORDS: Final[Mapping[str, str]] = {
    "straight": "straight",
    "lurus": "straight",
    "sleek": "straight",
    "wavy": "wavy",
    "waves": "wavy",
    "bergelombang": "wavy",
    "curly": "curly",
    "curls": "curly",
    "keriting": "curly",
    "coily": "curly",
    "afro": "afro",
}
HAIR_EXTRA_WORDS: Final[Mapping[str, str]] = {
    "ponytail": "ponytail",
    "pony tail": "ponytail",
    "kuncir": "ponytail",
    "bun": "bun",
    "updo": "bun",
    "top knot": "bun",
    "sanggul": "bun",
    "konde": "bun",
    "braid": "braids",
    "braids": "braids",
    "braided": "braids",
    "cornrows": "braids",
    "kepang": "braids",
    "spiky": "spiky",
    "spikes": "spiky",
    "mohawk": "spiky",
    "hijab": "hijab",
    "jilbab": "hijab",
    "kerudung": "hijab",
    "headscarf": "hijab",
}
# A full hair style for text that names none of the words above: (length, texture, extra).
HAIR_STYLE_PALETTE: Final[Sequence[tuple[str, str, str]]] = (
    ("short", "straight", ""),
    ("medium", "straight", ""),
    ("long", "straight", ""),
    ("long", "wavy", ""),
    ("short", "curly", ""),
    ("medium", "afro", ""),
    ("long", "straight", "ponytail"),
    ("medium", "straight", "bun"),
    ("long", "straight", "braids"),
    ("short", "straight", "spiky"),
)

SCENE_PALETTE: Final[Sequence[tuple[RGB, RGB]]] = (
    ((210, 226, 240), (140, 170, 210)),
    ((246, 226, 210), (210, 150, 140)),
    ((226, 236, 220), (150, 186, 150)),
    ((236, 226, 246), (160, 140, 200)),
    ((240, 236, 226), (196, 180, 150)),
    ((220, 232, 236), (120, 160, 170)),
    ((60, 64, 84), (24, 26, 40)),
)
