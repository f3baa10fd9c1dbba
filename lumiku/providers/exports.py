"""The export formats of the pose generator (SPEC §8.2), one image in, one file out.

| format | size (px) | file | fit |
|---|---|---|---|
| instagram_story | 1080 × 1920 (9:16) | JPEG q90 | contain over a blurred cover of itself |
| instagram_feed | 1080 × 1080 (1:1) | JPEG q90 | contain over a blurred cover of itself |
| tiktok | 1080 × 1920 (9:16) | JPEG q90 | contain over a blurred cover of itself |
| shopee_product | 1000 × 1000 (1:1) | JPEG q92 | contain, white padding |
| tokopedia_product | 1200 × 1200 (1:1) | JPEG q92 | contain, white padding |
| print_a4 | 2480 × 3508 (A4 at 300 dpi) | JPEG q95, 4:4:4, 300 dpi | contain, white padding |
| original | the image's own | PNG | unchanged |

"Contain" scales the whole image to fit inside the format (up or down, Lanczos) and centres
it; nothing is ever cropped, so a product or a pose keeps its edges. Marketplaces want
square product photos on white (Shopee asks for 1:1 and at least 500 px, shown at 1000 px;
Tokopedia for 1:1 and at least 300 px; 1200 px was chosen for sharp zoom while staying well
under either's file-size limit). Social formats fill the bars with a blurred, darkened copy
of the image instead of flat colour. Transparent images are flattened on white before JPEG.
The same input always gives the same bytes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

import attrs
import trio
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from lumiku.providers.base import InvalidRequest
from lumiku.providers.compose import decode, encode_png

if TYPE_CHECKING:
    from collections.abc import Mapping

WHITE: Final = (255, 255, 255)


@attrs.frozen
class ExportFormat:
    name: str
    size: tuple[int, int] | None  # None: the image's own size
    image_format: str  # "JPEG" | "PNG"
    fill: str  # "blur" | "white" | "none"
    quality: int = 90
    dpi: int = 72

    @property
    def extension(self) -> str:
        return "jpg" if self.image_format == "JPEG" else "png"

    @property
    def content_type(self) -> str:
        return "image/jpeg" if self.image_format == "JPEG" else "image/png"


EXPORT_FORMATS: Final[Mapping[str, ExportFormat]] = {
    f.name: f
    for f in (
        ExportFormat("instagram_story", (1080, 1920), "JPEG", "blur"),
        ExportFormat("instagram_feed", (1080, 1080), "JPEG", "blur"),
        ExportFormat("tiktok", (1080, 1920), "JPEG", "blur"),
        ExportFormat("shopee_product", (1000, 1000), "JPEG", "white", quality=92),
        ExportFormat("tokopedia_product", (1200, 1200), "JPEG", "white", quality=92),
        ExportFormat("print_a4", (2480, 3508), "JPEG", "white", quality=95, dpi=300),
        ExportFormat("original", None, "PNG", "none"),
    )
}


@attrs.frozen
class Export:
    format: ExportFormat
    data: bytes = attrs.field(repr=False)
    width: int
    height: int


def export_image(data: bytes, format_name: str) -> Export:
    """`data` (PNG/JPEG/WebP) in the export format `format_name`; synchronous (CPU-bound:
    call `export` from trio). InvalidRequest for an unknown format or undecodable image."""
    spec = EXPORT_FORMATS.get(format_name)
    if spec is None:
        raise InvalidRequest(f"unknown export format {format_name!r}")
    image = decode(data, "exported")
    if spec.size is None:
        if image.format == "PNG":
            return Export(spec, data, image.width, image.height)
        return Export(spec, encode_png(image), image.width, image.height)
    flat = _flatten(image)
    framed = _frame(flat, spec.size, spec.fill)
    buffer = io.BytesIO()
    framed.save(
        buffer,
        "JPEG",
        quality=spec.quality,
        dpi=(spec.dpi, spec.dpi),
        subsampling=0 if spec.dpi >= 300 else 2,
    )
    return Export(spec, buffer.getvalue(), framed.width, framed.height)


async def export(data: bytes, format_name: str) -> Export:
    """`export_image` in a worker thread."""
    return await trio.to_thread.run_sync(export_image, data, format_name)


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*WHITE, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _frame(image: Image.Image, size: tuple[int, int], fill: str) -> Image.Image:
    width, height = size
    scale = min(width / image.width, height / image.height)
    inner = (max(round(image.width * scale), 1), max(round(image.height * scale), 1))
    resized = image.resize(inner, Image.Resampling.LANCZOS)
    if fill == "blur":
        # Blur a small cover-crop and scale it up: the same look as blurring at full size
        # for a fraction of the cost.
        small = ImageOps.fit(image, (max(width // 16, 1), max(height // 16, 1)))
        small = small.filter(ImageFilter.GaussianBlur(2))
        canvas = ImageEnhance.Brightness(small.resize(size, Image.Resampling.BICUBIC)).enhance(0.75)
    else:
        canvas = Image.new("RGB", size, WHITE)
    canvas.paste(resized, ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas
