"""Putting a subject in front of a background, for every provider (SPEC §8.2 backgrounds).

What counts as the subject's background: its transparent pixels when it has an alpha
channel; otherwise, when its four corners agree on one plain colour (a figure on a white
studio backdrop), the pixels close to that colour, with a soft edge. A subject with neither
(a photograph) covers the new background entirely; upload a cut-out to avoid that.

`composite_background` is the whole `background` operation with the scene painter as a
parameter: the local provider paints procedurally, the HTTP providers ask their model.
"""

from __future__ import annotations

import io
import math
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat, UnidentifiedImageError

from lumiku.providers.base import BackgroundRequest, InvalidRequest, Report, parse_hex_color

MAX_INPUT_PIXELS: Final = 4096 * 4096  # SPEC §10's largest upload
CORNER_AGREEMENT: Final = 40.0  # corners further apart than this are not one plain colour
KEY_THRESHOLD: Final = 30  # channel difference below which a pixel is background
KEY_RAMP: Final = 6  # alpha rises by this per unit of difference above the threshold
PNG_COMPRESS_LEVEL: Final = 3  # zlib: much faster than the default 6 for slightly larger files

_ORIENTATION: Final = 0x0112  # the EXIF tag

ScenePainter = Callable[[tuple[int, int]], Awaitable[Image.Image]]


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes; the same image always gives the same bytes (no timestamps)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode(data: bytes, what: str) -> Image.Image:
    """`data` decoded (EXIF orientation applied); InvalidRequest when it is not an image
    Pillow reads or is larger than MAX_INPUT_PIXELS."""
    image: Image.Image
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise InvalidRequest(f"the {what} image is larger than {MAX_INPUT_PIXELS} pixels")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"the {what} image cannot be decoded") from exc
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)  # a copy: it no longer knows its format
    return image


def subject_rgba(data: bytes) -> Image.Image:
    """The subject with its background transparent (module docstring)."""
    image = decode(data, "subject")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgba = image.convert("RGBA")
    lowest = rgba.getchannel("A").getextrema()[0]
    if has_alpha and isinstance(lowest, int | float) and lowest < 255:
        return rgba
    return key_out(rgba.convert("RGB"))


def key_out(image: Image.Image) -> Image.Image:
    """`image` (RGB) as RGBA with its plain border colour made transparent."""
    w, h = image.size
    patch = max(min(w, h) // 32, 2)
    boxes = [(0, 0), (w - patch, 0), (0, h - patch), (w - patch, h - patch)]
    corners = [ImageStat.Stat(image.crop((x, y, x + patch, y + patch))).mean for x, y in boxes]
    spread = max(math.dist(a, b) for a in corners for b in corners)
    if spread > CORNER_AGREEMENT:
        return image.convert("RGBA")
    backdrop = tuple(round(sum(c[i] for c in corners) / 4) for i in range(3))
    difference = ImageChops.difference(image, Image.new("RGB", image.size, backdrop))
    red, green, blue = difference.split()
    strongest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    alpha = strongest.point(
        lambda v: 0 if v <= KEY_THRESHOLD else min(255, (v - KEY_THRESHOLD) * KEY_RAMP)
    ).filter(ImageFilter.GaussianBlur(1))
    out = image.convert("RGBA")
    out.putalpha(alpha)
    return out


def solid(size: tuple[int, int], color: str) -> Image.Image:
    return Image.new("RGB", size, parse_hex_color(color))


def fitted_upload(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The uploaded image scaled and centre-cropped to cover `size`."""
    image = decode(data, "background").convert("RGB")
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def composite(subject: Image.Image, background: Image.Image) -> Image.Image:
    """`subject` (RGBA) over `background` (any mode, resized to cover it when it differs)."""
    if background.size != subject.size:
        background = ImageOps.fit(background, subject.size, Image.Resampling.LANCZOS)
    out = background.convert("RGBA")
    out.alpha_composite(subject)
    return out.convert("RGB")


async def composite_background(
    request: BackgroundRequest, report: Report, paint_scene: ScenePainter
) -> bytes:
    """The `background` operation: decode the subject, make the background (colour, upload
    or `paint_scene(size)` for ai_generate), composite, encode PNG. Reports "decoding
    subject", then "filling colour" / "fitting upload" (the scene painter reports its own),
    "compositing" and "encoding". Image work runs in worker threads."""
    await report("decoding subject")
    subject = await trio.to_thread.run_sync(subject_rgba, request.subject)
    if request.mode == "solid_color":
        await report("filling colour")
        background = solid(subject.size, request.color or "")
    elif request.mode == "upload":
        await report("fitting upload")
        background = await trio.to_thread.run_sync(
            fitted_upload, request.upload or b"", subject.size
        )
    else:
        background = await paint_scene(subject.size)
    await report("compositing")
    image = await trio.to_thread.run_sync(composite, subject, background)
    await report("encoding")
    return await trio.to_thread.run_sync(encode_png, image)
