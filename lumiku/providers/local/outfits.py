"""The avatar's clothes: one drawing function per outfit (palette.OUTFITS), over the torso.

Every function draws on `pen.image` through `pen.draw` within the `Torso` the painter
laid out; colours come from the look (`clothing`, `accent`, `skin`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import attrs
from PIL import Image, ImageChops, ImageDraw

from lumiku.providers.local.canvas import Point, disc, rounded_polygon, stroke
from lumiku.providers.local.palette import shade

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from lumiku.providers.local.look import Look


@attrs.frozen
class Pen:
    image: Image.Image
    draw: ImageDraw.ImageDraw
    look: Look
    rng: random.Random


@attrs.frozen
class Torso:
    """Where the clothes go, in canvas pixels."""

    cx: float  # the body's centre line
    y0: float  # the shoulder line (top of the clothes)
    side: float  # the portrait square's side
    nw: float  # the neck's half-width
    sw: float  # the shoulders' half-width
    outline: tuple[Point, ...]  # the body polygon


def draw_outfit(pen: Pen, torso: Torso) -> None:
    """Draw `pen.look.outfit` over the body already filled with the clothing colour."""
    OUTFITS[pen.look.outfit](pen, torso)


def _tee(pen: Pen, torso: Torso) -> None:
    cx, y0, side, nw = torso.cx, torso.y0, torso.side, torso.nw
    neckline = [cx - nw * 1.35, y0 - 0.03 * side, cx + nw * 1.35, y0 + 0.06 * side]
    pen.draw.chord(neckline, 0, 180, fill=shade(pen.look.skin, 0.92))
    pen.draw.arc(
        neckline,
        0,
        180,
        fill=shade(pen.look.clothing, 0.82),
        width=max(round(0.012 * side), 1),
    )


def _suit(pen: Pen, torso: Torso) -> None:
    cx, y0, side, nw, sw = torso.cx, torso.y0, torso.side, torso.nw, torso.sw
    clothing = pen.look.clothing
    shirt = (244, 244, 240) if clothing[0] + clothing[1] + clothing[2] < 600 else (60, 70, 90)
    pen.draw.polygon(
        [
            (cx - nw * 1.3, y0 - 0.01 * side),
            (cx + nw * 1.3, y0 - 0.01 * side),
            (cx, y0 + 0.22 * side),
        ],
        fill=shirt,
    )
    if pen.look.gender != "female":
        accent = pen.look.accent
        tie = accent if math.dist(accent, shirt) > 80 else (150, 30, 40)
        pen.draw.polygon(
            [
                (cx - 0.022 * side, y0 + 0.02 * side),
                (cx + 0.022 * side, y0 + 0.02 * side),
                (cx + 0.03 * side, y0 + 0.2 * side),
                (cx, y0 + 0.24 * side),
                (cx - 0.03 * side, y0 + 0.2 * side),
            ],
            fill=tie,
        )
    lapel = shade(clothing, 0.78)
    for sign in (-1, 1):
        pen.draw.polygon(
            [
                (cx + sign * nw * 1.3, y0 - 0.01 * side),
                (cx + sign * 0.02 * side, y0 + 0.24 * side),
                (cx + sign * 0.45 * sw, y0 + 0.1 * side),
            ],
            fill=lapel,
        )


def _jersey(pen: Pen, torso: Torso) -> None:
    cx, y0, side, nw, sw = torso.cx, torso.y0, torso.side, torso.nw, torso.sw
    pen.draw.polygon(
        [
            (cx - nw * 1.2, y0 - 0.01 * side),
            (cx + nw * 1.2, y0 - 0.01 * side),
            (cx, y0 + 0.09 * side),
        ],
        fill=shade(pen.look.skin, 0.92),
    )
    accent = pen.look.accent
    for sign in (-1, 1):
        stroke(
            pen.draw,
            (cx + sign * 0.4 * sw, y0 + 0.01 * side),
            (cx + sign * 0.95 * sw, y0 + 0.08 * side),
            0.025 * side,
            accent,
        )


def _fashion(pen: Pen, torso: Torso) -> None:
    cx, y0, side, nw = torso.cx, torso.y0, torso.side, torso.nw
    scoop = [cx - nw * 2.2, y0 - 0.06 * side, cx + nw * 2.2, y0 + 0.12 * side]
    pen.draw.chord(scoop, 0, 180, fill=shade(pen.look.skin, 0.95))
    for i in range(13):
        t = i / 12
        x = cx + (t - 0.5) * nw * 3.2
        y = y0 + 0.06 * side * (1 - (2 * t - 1) ** 2) + 0.005 * side
        disc(pen.draw, (x, y), 0.007 * side, (222, 186, 90))


def _batik(pen: Pen, torso: Torso) -> None:
    cx, y0, side, sw, body = torso.cx, torso.y0, torso.side, torso.sw, torso.outline
    # Pattern and mask cover only the body's bounding box (a fraction of the canvas).
    left = max(int(min(x for x, _ in body)), 0)
    top = max(int(y0 - 0.05 * side), 0)
    right = min(int(max(x for x, _ in body)) + 1, pen.image.size[0])
    bottom = pen.image.size[1]
    box = (right - left, bottom - top)
    local = [(x - left, y - top) for x, y in body]
    mask = Image.new("L", box)
    rounded_polygon(ImageDraw.Draw(mask), local, 0.045 * side, 255)
    pattern = Image.new("RGBA", box, (0, 0, 0, 0))
    ink = ImageDraw.Draw(pattern)
    step, r = 0.05 * side, 0.012 * side
    accent, dark = pen.look.accent, shade(pen.look.clothing, 0.7)
    offset = pen.rng.uniform(0, step)
    y, row = y0 - top, 0
    while y < box[1]:
        x = cx - left - sw * 1.6 + offset + (step / 2 if row % 2 else 0)
        while x < cx - left + sw * 1.6:
            ink.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=(*accent, 220))
            dot = [x - r * 0.35, y - r * 0.35, x + r * 0.35, y + r * 0.35]
            ink.ellipse(dot, fill=(*dark, 255))
            x += step
        y += step * 0.8
        row += 1
    pattern.putalpha(ImageChops.darker(pattern.getchannel("A"), mask))
    pen.image.paste(pattern, (left, top), pattern)
    _tee(pen, torso)


def _hoodie(pen: Pen, torso: Torso) -> None:
    cx, y0, side, nw = torso.cx, torso.y0, torso.side, torso.nw
    hood = shade(pen.look.clothing, 0.8)
    pen.draw.arc(
        [cx - nw * 2.4, y0 - 0.1 * side, cx + nw * 2.4, y0 + 0.12 * side],
        0,
        180,
        fill=hood,
        width=max(round(0.04 * side), 1),
    )
    _tee(pen, torso)
    for sign in (-1, 1):
        stroke(
            pen.draw,
            (cx + sign * nw * 0.8, y0 + 0.05 * side),
            (cx + sign * nw * 0.9, y0 + 0.2 * side),
            0.008 * side,
            (236, 236, 232),
        )


OUTFITS: Final[dict[str, Callable[[Pen, Torso], None]]] = {
    "suit": _suit,
    "tee": _tee,
    "jersey": _jersey,
    "fashion": _fashion,
    "batik": _batik,
    "hoodie": _hoodie,
}
