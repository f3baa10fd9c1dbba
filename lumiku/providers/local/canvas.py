"""Small Pillow helpers shared by the local renderers (all synchronous: run them in threads).

Shapes are drawn at `supersample(w, h)` times the output size and reduced at the end, which
anti-aliases Pillow's hard-edged primitives for the price of one box filter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from PIL import Image, ImageDraw, ImageOps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lumiku.providers.local.palette import RGB

Point = tuple[float, float]
Ink = int | tuple[int, ...]  # what ImageDraw fills with: a level, RGB or RGBA

_SUPERSAMPLE_MAX_SIDE: Final = 1024


def supersample(width: int, height: int) -> int:
    """How many times larger to draw: 2 up to 1024 px a side, else 1 (memory and time)."""
    return 2 if max(width, height) <= _SUPERSAMPLE_MAX_SIDE else 1


def vertical_gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    ramp = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return ImageOps.colorize(ramp, top, bottom)


def radial_gradient(size: tuple[int, int], inner: RGB, outer: RGB) -> Image.Image:
    ramp = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return ImageOps.colorize(ramp, inner, outer)


def stroke(draw: ImageDraw.ImageDraw, a: Point, b: Point, width: float, fill: Ink) -> None:
    """A thick segment with round caps."""
    w = max(round(width), 1)
    draw.line([a, b], fill=fill, width=w)
    disc(draw, a, width / 2, fill)
    disc(draw, b, width / 2, fill)


def disc(draw: ImageDraw.ImageDraw, center: Point, radius: float, fill: Ink) -> None:
    x, y = center
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)


def ellipse_polygon(a: Point, b: Point, half_width: float, steps: int = 36) -> list[Point]:
    """The points of an ellipse whose long axis runs from `a` to `b` (OpenPose limbs)."""
    (ax, ay), (bx, by) = a, b
    cx, cy = (ax + bx) / 2, (ay + by) / 2
    half_length = math.hypot(bx - ax, by - ay) / 2
    angle = math.atan2(by - ay, bx - ax)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points = []
    for i in range(steps):
        t = 2 * math.pi * i / steps
        u, v = half_length * math.cos(t), half_width * math.sin(t)
        points.append((cx + u * cos_a - v * sin_a, cy + u * sin_a + v * cos_a))
    return points


def rounded_polygon(
    draw: ImageDraw.ImageDraw, points: Sequence[Point], radius: float, fill: Ink
) -> None:
    """A filled polygon whose outline is a thick round-jointed stroke (soft corners)."""
    draw.polygon(list(points), fill=fill)
    closed = [*points, points[0]]
    draw.line(closed, fill=fill, width=max(round(radius * 2), 1), joint="curve")
    for point in points:
        disc(draw, point, radius, fill)
