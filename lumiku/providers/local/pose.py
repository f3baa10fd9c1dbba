"""The local posed figure and the OpenPose skeleton map.

The skeleton map follows ControlNet's openpose annotator (v1.1 `draw_bodypose`), so it can be
fed to an openpose ControlNet as is: a black canvas; the 17 limbs of LIMBS drawn as filled
ellipses `stick_width` px thick in OPENPOSE_COLORS[limb], then the whole canvas dimmed to 60 %;
then each present keypoint as a disc in OPENPOSE_COLORS[keypoint]. The annotator draws at
about 512 px with a 4 px stick and 4 px discs; both scale with the image here.

The figure: limbs as thick round-capped strokes, torso, neck and head on a transparent canvas;
its colours come from the subject image when one is given (clothing = its most common
colour, skin = its most common skin-like colour, …), else from the seed. The seed also moves
every keypoint a little (at most JITTER of the image side), so variations differ; both images
and `PoseResult.keypoints` use the moved keypoints.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Final

import attrs
from PIL import Image, ImageDraw

from lumiku.providers.base import Keypoint
from lumiku.providers.compose import decode, encode_png
from lumiku.providers.local import canvas, palette
from lumiku.providers.local.canvas import Point, disc, rounded_polygon, stroke
from lumiku.providers.local.palette import RGB, shade

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lumiku.providers.base import PoseRequest

STAGES: Final = ("preparing", "drawing skeleton", "drawing figure", "encoding")
JITTER: Final = 0.006

OPENPOSE_COLORS: Final[tuple[RGB, ...]] = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
# (from, to) keypoint indexes (base.KEYPOINT_NAMES); limb i is drawn in OPENPOSE_COLORS[i].
LIMBS: Final[tuple[tuple[int, int], ...]] = (
    (1, 2),  # neck - r_shoulder
    (1, 5),  # neck - l_shoulder
    (2, 3),  # r_shoulder - r_elbow
    (3, 4),  # r_elbow - r_wrist
    (5, 6),  # l_shoulder - l_elbow
    (6, 7),  # l_elbow - l_wrist
    (1, 8),  # neck - r_hip
    (8, 9),  # r_hip - r_knee
    (9, 10),  # r_knee - r_ankle
    (1, 11),  # neck - l_hip
    (11, 12),  # l_hip - l_knee
    (12, 13),  # l_knee - l_ankle
    (1, 0),  # neck - nose
    (0, 14),  # nose - r_eye
    (14, 16),  # r_eye - r_ear
    (0, 15),  # nose - l_eye
    (15, 17),  # l_eye - l_ear
)
LIMB_DIMMING: Final = 0.6


def stick_width(width: int, height: int) -> int:
    """The annotator's 4 px at 512 px, scaled with the image."""
    return max(4, round(4 * min(width, height) / 512))


@attrs.frozen
class FigureColors:
    skin: RGB
    top: RGB
    bottom: RGB
    hair: RGB
    shoes: RGB


def jittered(request: PoseRequest) -> tuple[Keypoint, ...]:
    """The request's keypoints moved by the seed (absent ones untouched)."""
    rng = random.Random(request.seed_value ^ 0x1A77E5)
    out = []
    for point in request.keypoints:
        dx, dy = rng.uniform(-JITTER, JITTER), rng.uniform(-JITTER, JITTER)
        if not point.present:
            out.append(point)
            continue
        x = min(max(point.x + dx, 0.0), 1.0)
        y = min(max(point.y + dy, 0.0), 1.0)
        out.append(Keypoint(x, y, point.visibility))
    return tuple(out)


def figure_colors(subject: bytes | None, seed: int) -> FigureColors:
    """The figure's colours: taken from `subject` when given, else picked by `seed`."""
    rng = random.Random(seed ^ 0xC0108)
    skin = rng.choice(palette.SKIN_PALETTE)
    top = rng.choice([c for p in palette.OUTFIT_PALETTES.values() for c in p])
    bottom = rng.choice(((40, 50, 80), (30, 30, 34), (90, 80, 70), (60, 70, 60), (200, 196, 186)))
    hair = rng.choice(palette.NATURAL_HAIR)
    if subject is not None:
        # Clothing = the most common colour that is not skin-like, skin = the most common
        # skin-like one, hair = the most common of the rest (blonde hair looks skin-like).
        colors = _dominant_colors(subject)
        skin_like = [c for c in colors if _skin_like(c)]
        others = [c for c in colors if not _skin_like(c)]
        if skin_like:
            skin = skin_like[0]
        if others:
            top = others[0]
            bottom = others[1] if len(others) > 1 else shade(top, 0.6)
        rest = [c for c in colors if c not in (skin, top, bottom)]
        hair = rest[0] if rest else shade(skin, 0.4)
    return FigureColors(skin, top, bottom, hair, shade(bottom, 0.45))


def _skin_like(color: RGB) -> bool:
    """Within the ratios of real skin tones (palette.SKIN_TONES): green 55-93 % of red and
    blue 64-95 % of green. Red, auburn and blonde hair fall outside; brown hair does not."""
    r, g, b = color
    return r > 50 and g > 0 and 0.55 <= g / r <= 0.93 and 0.64 <= b / g <= 0.95


def _dominant_colors(data: bytes) -> list[RGB]:
    """The subject's colours, most common first, without its background (transparent
    pixels, or colours close to its corners when it has no transparency)."""
    image = decode(data, "subject").convert("RGBA")
    image.thumbnail((64, 64))
    pixels = [p for p in image.get_flattened_data() if isinstance(p, tuple)]  # RGBA tuples
    opaque = [p[:3] for p in pixels if p[3] >= 128]
    if len(opaque) == len(pixels):
        w, h = image.size
        corners = [pixels[0][:3], pixels[w - 1][:3], pixels[(h - 1) * w][:3], pixels[-1][:3]]
        opaque = [p for p in opaque if min(_distance(p, c) for c in corners) > 60]
    if not opaque:
        return []
    strip = Image.new("RGB", (len(opaque), 1))
    strip.putdata(opaque)
    quantized = strip.quantize(6, method=Image.Quantize.MEDIANCUT)
    flat = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)  # (count, palette index)
    indexes = [i for _n, i in counts if isinstance(i, int)]
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in indexes]


def _distance(a: Sequence[int], b: Sequence[int]) -> float:
    return math.dist(a, b)


def draw_skeleton(points: Sequence[Keypoint], width: int, height: int) -> Image.Image:
    """The OpenPose map (module docstring) at `width` × `height`."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    stick = stick_width(width, height)
    xy = [(p.x * width, p.y * height) for p in points]
    for color, (a, b) in zip(OPENPOSE_COLORS, LIMBS, strict=False):
        if points[a].present and points[b].present:
            draw.polygon(canvas.ellipse_polygon(xy[a], xy[b], stick), fill=color)
    image = image.point([int(v * LIMB_DIMMING) for v in range(256)] * 3)
    draw = ImageDraw.Draw(image)
    for point, (x, y), color in zip(points, xy, OPENPOSE_COLORS, strict=True):
        if point.present:
            disc(draw, (x, y), stick, color)
    return image


class FigurePainter:
    """Draws the figure on a transparent canvas, supersampled like the avatar."""

    def __init__(self, points: Sequence[Keypoint], colors: FigureColors, width: int, height: int):
        self.k = canvas.supersample(width, height)
        self.image = Image.new("RGBA", (width * self.k, height * self.k), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.colors = colors
        self.points = points
        self.xy: list[Point | None] = [
            (p.x * width * self.k, p.y * height * self.k) if p.present else None for p in points
        ]
        self.unit = self._torso_length(min(width, height) * self.k)

    def _torso_length(self, side: float) -> float:
        neck, nose = self.xy[1], self.xy[0]
        hips = [p for p in (self.xy[8], self.xy[11]) if p is not None]
        if neck is not None and hips:
            hip = (sum(p[0] for p in hips) / len(hips), sum(p[1] for p in hips) / len(hips))
            length = math.dist(neck, hip)
        elif neck is not None and nose is not None:
            length = 2.6 * math.dist(neck, nose)
        else:
            length = 0.3 * side
        return max(length, 0.05 * side)

    def _limb(self, a: int, b: int, width: float, color: RGB) -> None:
        pa, pb = self.xy[a], self.xy[b]
        if pa is not None and pb is not None:
            stroke(self.draw, pa, pb, width * self.unit, color)

    def paint(self) -> None:
        c = self.colors
        # The person's left side first, a shade darker, then the body, then the right side.
        self._leg(11, shade(c.bottom, 0.85), shade(c.shoes, 0.85))
        self._arm(5, shade(c.top, 0.85), shade(c.skin, 0.9))
        self._torso()
        self._leg(8, c.bottom, c.shoes)
        self._head()
        self._arm(2, c.top, c.skin)

    def _leg(self, hip: int, cloth: RGB, shoes: RGB) -> None:
        # hip, knee and ankle are consecutive indexes: (8, 9, 10) and (11, 12, 13).
        self._limb(hip, hip + 1, 0.27, cloth)
        self._limb(hip + 1, hip + 2, 0.21, cloth)
        ankle = self.xy[hip + 2]
        if ankle is not None:
            disc(self.draw, ankle, 0.1 * self.unit, shoes)

    def _arm(self, shoulder: int, sleeve: RGB, skin: RGB) -> None:
        # shoulder, elbow and wrist are consecutive indexes: (2, 3, 4) and (5, 6, 7).
        self._limb(shoulder, shoulder + 1, 0.2, sleeve)
        self._limb(shoulder + 1, shoulder + 2, 0.16, skin)
        wrist = self.xy[shoulder + 2]
        if wrist is not None:
            disc(self.draw, wrist, 0.075 * self.unit, skin)

    def _torso(self) -> None:
        c, u = self.colors, self.unit
        corners = [self.xy[i] for i in (2, 5, 11, 8)]
        present = [p for p in corners if p is not None]
        if len(present) >= 3:
            rounded_polygon(self.draw, present, 0.09 * u, c.top)
        elif (neck := self.xy[1]) is not None:
            hips = [p for p in (self.xy[8], self.xy[11]) if p is not None]
            end = hips[0] if hips else (neck[0], neck[1] + u)
            stroke(self.draw, neck, end, 0.45 * u, c.top)
        r_hip, l_hip = self.xy[8], self.xy[11]
        if r_hip is not None and l_hip is not None:
            stroke(self.draw, r_hip, l_hip, 0.27 * u, c.bottom)

    def _head(self) -> None:
        c, u = self.colors, self.unit
        face = [self.xy[i] for i in (0, 14, 15, 16, 17)]
        present = [p for p in face if p is not None]
        neck = self.xy[1]
        if present:
            center = (
                sum(p[0] for p in present) / len(present),
                sum(p[1] for p in present) / len(present) - 0.04 * u,
            )
        elif neck is not None:
            center = (neck[0], neck[1] - 0.35 * u)
        else:
            return
        radius = 0.22 * u
        if neck is not None:
            stroke(self.draw, neck, center, 0.15 * u, shade(c.skin, 0.92))
        disc(self.draw, center, radius, c.skin)
        x, y = center
        self.draw.chord(
            [x - 1.08 * radius, y - 1.12 * radius, x + 1.08 * radius, y + 0.5 * radius],
            180,
            360,
            fill=c.hair,
        )
        for index in (14, 15):
            eye = self.xy[index]
            if eye is not None:
                disc(self.draw, eye, 0.028 * u, (30, 26, 24))

    def encode(self) -> bytes:
        image = self.image.reduce(self.k) if self.k > 1 else self.image
        return encode_png(image)
