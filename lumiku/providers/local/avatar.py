"""The local avatar: a stylised head-and-shoulders portrait drawn from a `Look`.

`AvatarPainter` draws in stages (`STAGES`, in order), each a plain method the provider runs
in a worker thread. `Layout` says where the parts are, in output pixels: the tests read the
hair, skin, iris and clothing colours at its sample points.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

import attrs
from PIL import Image, ImageDraw

from lumiku.providers.compose import encode_png
from lumiku.providers.local import canvas
from lumiku.providers.local.canvas import Point, disc, rounded_polygon, stroke
from lumiku.providers.local.look import Look, resolve_look
from lumiku.providers.local.outfits import Pen, Torso, draw_outfit
from lumiku.providers.local.palette import RGB, mix, shade

if TYPE_CHECKING:
    from lumiku.providers.base import AvatarRequest

STAGES: Final = ("painting background", "drawing body", "drawing face", "drawing hair", "encoding")
_EYE_WHITE: Final = (250, 250, 246)
_PUPIL: Final = (18, 18, 22)


@attrs.frozen
class Layout:
    """The portrait's geometry in output pixels. The figure sits in the bottom-centre
    square of side min(width, height)."""

    width: int
    height: int
    side: float
    cx: float  # head centre
    cy: float
    rx: float  # head half-width and half-height
    ry: float
    eyes: tuple[Point, Point]
    iris_r: float
    pupil_r: float
    shoulder_y: float
    shoulder_half: float

    @property
    def hair_sample(self) -> tuple[int, int, int, int]:
        """A box on the crown that hair covers (every style but bald, buzz and hijab)."""
        cx, cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        return (
            round(cx - 0.3 * rx),
            round(cy - 0.97 * ry),
            round(cx + 0.3 * rx),
            round(cy - 0.7 * ry),
        )

    @property
    def skin_sample(self) -> Point:
        """A point on the chin."""
        return self.cx, self.cy + 0.8 * self.ry

    def iris_sample(self, eye: int) -> Point:
        """A point on the iris ring of eye 0 (image left) or 1, clear of the highlight."""
        x, y = self.eyes[eye]
        return x + (self.pupil_r + 0.85 * self.iris_r) / 2, y

    @property
    def clothing_sample(self) -> Point:
        """A point on the chest, away from collars, ties and necklaces."""
        return self.cx + 0.62 * self.shoulder_half, self.shoulder_y + 0.2 * self.side


def layout_for(request: AvatarRequest, look: Look | None = None) -> Layout:
    look = look or resolve_look(request)
    rng = random.Random(request.seed_value ^ 0x5EED)
    w, h = request.width, request.height
    side = float(min(w, h))
    left, top = (w - side) / 2, h - side
    young, gender = look.age == "young", look.gender
    rx = 0.155 + {"female": -0.012, "male": 0.008}.get(gender, 0.0) + (0.006 if young else 0.0)
    ry = 0.195 - (0.01 if young else 0.0)
    rx += rng.uniform(-0.004, 0.004)
    ry += rng.uniform(-0.004, 0.004)
    cx = 0.5 + rng.uniform(-0.01, 0.01)
    cy = 0.40 + rng.uniform(-0.01, 0.01)
    eye_dx = 0.40 * rx + rng.uniform(-0.003, 0.003)
    eye_y = cy + 0.02 * ry
    iris = (0.12 if young else 0.105) * rx

    def px(x: float, y: float) -> Point:
        return left + x * side, top + y * side

    return Layout(
        width=w,
        height=h,
        side=side,
        cx=px(cx, 0)[0],
        cy=px(0, cy)[1],
        rx=rx * side,
        ry=ry * side,
        eyes=(px(cx - eye_dx, eye_y), px(cx + eye_dx, eye_y)),
        iris_r=iris * side,
        pupil_r=0.05 * rx * side,
        shoulder_y=px(0, 0.70)[1],
        shoulder_half=(0.30 + look.shoulders) * side,
    )


class AvatarPainter:
    """Paints one avatar; call the stage methods in STAGES order, then `encode()`."""

    def __init__(self, request: AvatarRequest) -> None:
        self.look = resolve_look(request)
        self.layout = layout_for(request, self.look)
        self.rng = random.Random(request.seed_value)
        self.k = canvas.supersample(request.width, request.height)
        self.size = (request.width, request.height)
        self.image = Image.new("RGB", (1, 1))  # painted by paint_background
        self.draw = ImageDraw.Draw(self.image, "RGBA")
        lay, k = self.layout, self.k
        self.cx, self.cy, self.rx, self.ry = lay.cx * k, lay.cy * k, lay.rx * k, lay.ry * k

    # --- stages ---------------------------------------------------------------------------

    def paint_background(self) -> None:
        # Painted at the output size and enlarged pixel for pixel: the final reduction gives
        # the same picture, for a quarter of the blending work.
        top, bottom = self.look.backdrop
        w, h = self.size
        backdrop = canvas.vertical_gradient((w, h), top, bottom)
        pen = ImageDraw.Draw(backdrop, "RGBA")
        for _ in range(self.rng.randint(5, 9)):
            r = self.rng.uniform(0.04, 0.14) * min(w, h)
            center = (self.rng.uniform(0, w), self.rng.uniform(0, h * 0.75))
            tint = mix(top, (255, 255, 255), self.rng.uniform(0.3, 0.8))
            disc(pen, center, r, (*tint, self.rng.randint(40, 90)))
        if self.k > 1:
            backdrop = backdrop.resize((w * self.k, h * self.k), Image.Resampling.NEAREST)
        self.image = backdrop
        self.draw = ImageDraw.Draw(self.image, "RGBA")

    def draw_body(self) -> None:
        self._hair_behind()
        look, lay, k = self.look, self.layout, self.k
        cx, y0, side = self.cx, lay.shoulder_y * k, lay.side * k
        sw = lay.shoulder_half * k
        ww = max(sw, (0.26 + look.waist + 0.4 * look.shoulders) * side)
        bottom = self.image.size[1] + 0.05 * side
        nw = self.rx * {"male": 0.42, "female": 0.32}.get(look.gender, 0.37)
        # Neck, with the head's shadow at its top.
        neck = [
            (cx - nw, self.cy + 0.6 * self.ry),
            (cx + nw, self.cy + 0.6 * self.ry),
            (cx + nw * 1.15, y0 + 0.04 * side),
            (cx - nw * 1.15, y0 + 0.04 * side),
        ]
        self.draw.polygon(neck, fill=shade(look.skin, 0.92))
        body = [
            (cx - 0.35 * sw, y0),
            (cx + 0.35 * sw, y0),
            (cx + sw, y0 + 0.07 * side),
            (cx + ww, bottom),
            (cx - ww, bottom),
            (cx - sw, y0 + 0.07 * side),
        ]
        rounded_polygon(self.draw, body, 0.045 * side, look.clothing)
        pen = Pen(self.image, self.draw, look, self.rng)
        draw_outfit(pen, Torso(cx, y0, side, nw, sw, tuple(body)))

    def draw_face(self) -> None:
        look, cx, cy, rx, ry = self.look, self.cx, self.cy, self.rx, self.ry
        skin = look.skin
        for sign in (-1, 1):  # ears
            ex = cx + sign * 0.97 * rx
            self.draw.ellipse(
                [ex - 0.16 * rx, cy - 0.2 * ry, ex + 0.16 * rx, cy + 0.28 * ry],
                fill=shade(skin, 0.93),
            )
        self.draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
        if look.gender == "male":  # a squarer jaw
            jaw = [
                (cx - 0.97 * rx, cy + 0.05 * ry),
                (cx - 0.8 * rx, cy + 0.72 * ry),
                (cx - 0.38 * rx, cy + 0.98 * ry),
                (cx + 0.38 * rx, cy + 0.98 * ry),
                (cx + 0.8 * rx, cy + 0.72 * ry),
                (cx + 0.97 * rx, cy + 0.05 * ry),
            ]
            rounded_polygon(self.draw, jaw, 0.04 * rx, skin)
        line = shade(skin, 0.78)
        if look.age == "mature":
            for dy in (-0.34, -0.25):
                self.draw.arc(
                    [cx - 0.4 * rx, cy + dy * ry, cx + 0.4 * rx, cy + (dy + 0.12) * ry],
                    200,
                    340,
                    fill=line,
                    width=max(round(0.02 * rx), 1),
                )
        if look.gender == "female" or look.age == "young":
            for sign in (-1, 1):
                disc(
                    self.draw,
                    (cx + sign * 0.55 * rx, cy + 0.34 * ry),
                    0.17 * rx,
                    (232, 120, 120, 45),
                )
        if look.beard:
            beard = [
                (cx - 0.95 * rx, cy + 0.2 * ry),
                (cx - 0.7 * rx, cy + 0.85 * ry),
                (cx - 0.25 * rx, cy + 1.08 * ry),
                (cx + 0.25 * rx, cy + 1.08 * ry),
                (cx + 0.7 * rx, cy + 0.85 * ry),
                (cx + 0.95 * rx, cy + 0.2 * ry),
                (cx + 0.5 * rx, cy + 0.45 * ry),
                (cx - 0.5 * rx, cy + 0.45 * ry),
            ]
            rounded_polygon(self.draw, beard, 0.05 * rx, (*look.hair, 235))
        self._eyes()
        # Nose and mouth.
        self.draw.arc(
            [cx - 0.1 * rx, cy + 0.22 * ry, cx + 0.1 * rx, cy + 0.36 * ry],
            20,
            160,
            fill=line,
            width=max(round(0.03 * rx), 1),
        )
        mouth = [cx - 0.26 * rx, cy + 0.5 * ry, cx + 0.26 * rx, cy + 0.63 * ry]
        self.draw.chord(mouth, 0, 180, fill=look.lips)
        self.draw.line(
            [(cx - 0.26 * rx, cy + 0.565 * ry), (cx + 0.26 * rx, cy + 0.565 * ry)],
            fill=shade(look.lips, 0.7),
            width=max(round(0.02 * rx), 1),
        )
        if look.glasses:
            self._glasses()

    def draw_hair(self) -> None:
        style, hair = self.look.hair_style, self.look.hair
        cx, cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        if style.extra == "hijab":
            self._hijab_front()
            return
        if style.length == "bald":
            self.draw.ellipse(
                [cx - 0.45 * rx, cy - 0.92 * ry, cx - 0.1 * rx, cy - 0.7 * ry],
                fill=(255, 255, 255, 40),
            )
            return
        if style.length == "buzz":
            hair = mix(hair, self.look.skin, 0.45)
        top, fringe = cy - 1.16 * ry, cy - 0.42 * ry
        if style.texture == "afro":
            top = cy - 1.3 * ry
        self.draw.chord([cx - 1.1 * rx, top, cx + 1.1 * rx, 2 * fringe - top], 180, 360, fill=hair)
        if style.length == "buzz":
            return
        part = self.rng.choice((-0.35, 0.0, 0.35))
        sweep = -1 if part >= 0 else 1
        self.draw.polygon(
            [
                (cx + part * rx, cy - 1.0 * ry),
                (cx + sweep * 0.95 * rx, fringe - 0.05 * ry),
                (cx + sweep * 0.2 * rx, fringe + 0.06 * ry),
            ],
            fill=hair,
        )
        reach = {"short": -0.1, "medium": 0.95, "long": 1.6}[style.length]
        if style.texture != "afro":
            short = style.length == "short"
            for sign in (-1, 1):  # side locks (sideburns when short)
                outer = cx + sign * (1.0 if short else 1.1) * rx
                inner = cx + sign * (0.88 if short else 0.86) * rx
                lock = [
                    (outer, fringe - 0.2 * ry),
                    (inner, fringe),
                    (inner, cy + reach * ry),
                    (outer + sign * 0.04 * rx, cy + reach * ry),
                ]
                rounded_polygon(self.draw, lock, (0.03 if short else 0.06) * rx, hair)
        if style.texture in ("curly", "afro", "wavy"):
            self._curls(hair, top, fringe, reach, style.texture)
        if style.extra == "spiky":
            for i in range(7):
                x = cx + (i - 3) * 0.28 * rx
                self.draw.polygon(
                    [
                        (x - 0.16 * rx, top + 0.25 * ry),
                        (x + 0.16 * rx, top + 0.25 * ry),
                        (x + 0.05 * rx, top - 0.25 * ry),
                    ],
                    fill=hair,
                )
        if style.extra == "bun":
            disc(self.draw, (cx, top - 0.08 * ry), 0.38 * rx, hair)
        strand = shade(hair, 0.78)
        for _ in range(self.rng.randint(3, 6)):
            x = cx + self.rng.uniform(-0.8, 0.8) * rx
            self.draw.arc(
                [x - 0.5 * rx, top + 0.05 * ry, x + 0.5 * rx, fringe + 0.3 * ry],
                200,
                250,
                fill=strand,
                width=max(round(0.025 * rx), 1),
            )

    def encode(self) -> bytes:
        image = self.image.reduce(self.k) if self.k > 1 else self.image
        return encode_png(image)

    # --- parts ----------------------------------------------------------------------------

    def _hair_behind(self) -> None:
        style, hair = self.look.hair_style, self.look.hair
        cx, cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        if style.extra == "hijab":
            color = self._hijab_color()
            self.draw.ellipse(
                [cx - 1.32 * rx, cy - 1.22 * ry, cx + 1.32 * rx, cy + 1.3 * ry], fill=color
            )
            drape = [
                (cx - 1.3 * rx, cy),
                (cx + 1.3 * rx, cy),
                (cx + 2.1 * rx, cy + 2.4 * ry),
                (cx - 2.1 * rx, cy + 2.4 * ry),
            ]
            rounded_polygon(self.draw, drape, 0.3 * rx, color)
            return
        if style.length in ("bald", "buzz"):
            return
        if style.texture == "afro":
            self.draw.ellipse(
                [cx - 1.75 * rx, cy - 1.5 * ry, cx + 1.75 * rx, cy + 0.75 * ry], fill=hair
            )
        elif style.length == "long" and style.extra not in ("ponytail", "bun"):
            back = [
                (cx - 1.2 * rx, cy - 0.7 * ry),
                (cx + 1.2 * rx, cy - 0.7 * ry),
                (cx + 1.32 * rx, cy + 1.9 * ry),
                (cx - 1.32 * rx, cy + 1.9 * ry),
            ]
            rounded_polygon(self.draw, back, 0.4 * rx, shade(hair, 0.88))
        elif style.length == "medium" and style.extra != "bun":
            back = [
                (cx - 1.15 * rx, cy - 0.7 * ry),
                (cx + 1.15 * rx, cy - 0.7 * ry),
                (cx + 1.2 * rx, cy + 1.0 * ry),
                (cx - 1.2 * rx, cy + 1.0 * ry),
            ]
            rounded_polygon(self.draw, back, 0.3 * rx, shade(hair, 0.88))
        if style.extra == "ponytail":
            tail = [
                (cx + 0.7 * rx, cy - 0.75 * ry),
                (cx + 1.35 * rx, cy - 0.5 * ry),
                (cx + 1.55 * rx, cy + 1.3 * ry),
                (cx + 1.05 * rx, cy + 1.1 * ry),
            ]
            rounded_polygon(self.draw, tail, 0.25 * rx, shade(hair, 0.9))
        if style.extra == "braids":
            for sign in (-1, 1):
                x = cx + sign * 1.02 * rx
                for i in range(9):
                    disc(
                        self.draw,
                        (x + sign * 0.015 * i * rx, cy + (0.1 + 0.2 * i) * ry),
                        0.17 * rx,
                        shade(hair, 0.92 if i % 2 else 1.0),
                    )

    def _eyes(self) -> None:
        look, k, lay = self.look, self.k, self.layout
        rx, ry = self.rx, self.ry
        young = look.age == "young"
        ew, eh = (0.22 if young else 0.2) * rx, (0.13 if young else 0.11) * rx
        iris, pupil = lay.iris_r * k, lay.pupil_r * k
        lid = shade(look.skin, 0.45)
        brow_w = {"male": 0.065, "female": 0.035}.get(look.gender, 0.05) * rx
        brow = shade(look.hair, 0.8)
        for index, (ex, ey) in enumerate(lay.eyes):
            ex, ey = ex * k, ey * k
            sign = -1 if index == 0 else 1
            self.draw.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=_EYE_WHITE)
            disc(self.draw, (ex, ey), iris, look.eyes)
            self.draw.ellipse(
                [ex - iris, ey - iris, ex + iris, ey + iris],
                outline=shade(look.eyes, 0.65),
                width=max(round(0.12 * iris), 1),
            )
            disc(self.draw, (ex, ey), pupil, _PUPIL)
            disc(self.draw, (ex - 0.45 * iris, ey - 0.45 * iris), 0.3 * iris, (255, 255, 255))
            self.draw.arc(
                [ex - ew, ey - eh, ex + ew, ey + eh],
                195,
                345,
                fill=lid,
                width=max(round(0.03 * rx), 1),
            )
            if look.gender == "female":
                for i in range(3):
                    base = (ex + sign * ew * (0.6 + 0.15 * i), ey - eh * (0.75 - 0.25 * i))
                    stroke(
                        self.draw,
                        base,
                        (base[0] + sign * 0.05 * rx, base[1] - 0.05 * rx),
                        0.012 * rx,
                        lid,
                    )
            if look.age == "mature":
                self.draw.arc(
                    [ex - ew, ey, ex + ew, ey + 2.2 * eh],
                    20,
                    160,
                    fill=shade(look.skin, 0.8),
                    width=max(round(0.015 * rx), 1),
                )
            stroke(
                self.draw,
                (ex - sign * 0.9 * ew, ey - 0.2 * ry),
                (ex + sign * 1.1 * ew, ey - 0.24 * ry),
                brow_w,
                brow,
            )

    def _glasses(self) -> None:
        rx, k = self.rx, self.k
        frame = (30, 30, 34)
        width = max(round(0.035 * rx), 1)
        centers = [(x * k, y * k) for x, y in self.layout.eyes]
        for ex, ey in centers:
            box = [ex - 0.3 * rx, ey - 0.2 * rx, ex + 0.3 * rx, ey + 0.2 * rx]
            self.draw.rounded_rectangle(
                box, radius=0.08 * rx, fill=(255, 255, 255, 30), outline=frame, width=width
            )
        (lx, ly), (rx2, _ry2) = centers
        self.draw.line([(lx + 0.3 * rx, ly), (rx2 - 0.3 * rx, ly)], fill=frame, width=width)

    def _curls(self, hair: RGB, top: float, fringe: float, reach: float, texture: str) -> None:
        cx, _cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        r = {"curly": 0.17, "afro": 0.2, "wavy": 0.13}[texture] * rx
        count = 11
        for i in range(count):  # along the crown
            t = i / (count - 1)
            x = cx + (t - 0.5) * 2.0 * rx
            y = fringe + (top - fringe) * 0.9 * (1 - (2 * t - 1) ** 2)
            disc(self.draw, (x, y), r * self.rng.uniform(0.85, 1.15), hair)
        if texture == "afro":
            return
        for sign in (-1, 1):  # down the sides
            steps = max(int((reach + 0.4) / 0.25), 1)
            for i in range(steps):
                disc(self.draw, (cx + sign * 1.05 * rx, fringe + i * 0.25 * ry), r, hair)

    def _hijab_color(self) -> RGB:
        return shade(self.look.clothing, 1.25)

    def _hijab_front(self) -> None:
        cx, cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        pen = ImageDraw.Draw(layer)
        pen.ellipse(
            [cx - 1.25 * rx, cy - 1.2 * ry, cx + 1.25 * rx, cy + 1.28 * ry],
            fill=(*self._hijab_color(), 255),
        )
        pen.ellipse(
            [cx - 0.84 * rx, cy - 0.72 * ry, cx + 0.84 * rx, cy + 1.0 * ry], fill=(0, 0, 0, 0)
        )
        self.image.paste(layer, (0, 0), layer)


def render_avatar(request: AvatarRequest) -> bytes:
    """The whole avatar in one call (samples, benchmarks); the provider runs the stages."""
    painter = AvatarPainter(request)
    painter.paint_background()
    painter.draw_body()
    painter.draw_face()
    painter.draw_hair()
    return painter.encode()
