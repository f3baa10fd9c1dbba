"""Reading rendered images back in tests."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageStat

STANDING: list[tuple[float, float, float]] = [
    (0.50, 0.14, 2),  # nose
    (0.50, 0.24, 2),  # neck
    (0.38, 0.25, 2),  # r_shoulder
    (0.26, 0.34, 2),  # r_elbow
    (0.16, 0.42, 2),  # r_wrist
    (0.62, 0.25, 2),  # l_shoulder
    (0.74, 0.16, 2),  # l_elbow
    (0.84, 0.06, 2),  # l_wrist
    (0.42, 0.54, 2),  # r_hip
    (0.38, 0.72, 2),  # r_knee
    (0.36, 0.92, 2),  # r_ankle
    (0.58, 0.54, 2),  # l_hip
    (0.64, 0.72, 2),  # l_knee
    (0.68, 0.92, 2),  # l_ankle
    (0.46, 0.10, 2),  # r_eye
    (0.54, 0.10, 2),  # l_eye
    (0.40, 0.12, 2),  # r_ear
    (0.60, 0.12, 2),  # l_ear
]


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def solid_png(size: tuple[int, int], color: tuple[int, ...], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def median(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, ...]:
    stat = ImageStat.Stat(image.convert("RGB").crop(box))
    return tuple(round(v) for v in stat.median)


def at(image: Image.Image, point: tuple[float, float]) -> tuple[int, ...]:
    pixel = image.getpixel((round(point[0]), round(point[1])))
    assert isinstance(pixel, tuple)
    return pixel


def near(a: Sequence[int], b: Sequence[int], tolerance: float = 12.0) -> bool:
    return math.dist(a[:3], b[:3]) <= tolerance
