"""Export formats (SPEC §8.2): exact sizes, file types, deterministic fitting."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lumiku.providers.base import InvalidRequest
from lumiku.providers.exports import EXPORT_FORMATS, export, export_image

from .pixels import at, near, solid_png

SIZES = {
    "instagram_story": (1080, 1920),
    "instagram_feed": (1080, 1080),
    "tiktok": (1080, 1920),
    "shopee_product": (1000, 1000),
    "tokopedia_product": (1200, 1200),
    "print_a4": (2480, 3508),
}
WIDE_RED = solid_png((1024, 512), (220, 20, 20))


def test_every_spec_format_is_known() -> None:
    assert set(EXPORT_FORMATS) == {*SIZES, "original"}


@pytest.mark.parametrize(("name", "size"), sorted(SIZES.items()))
def test_sized_formats_are_exact_jpegs(name: str, size: tuple[int, int]) -> None:
    result = export_image(WIDE_RED, name)
    image = Image.open(io.BytesIO(result.data))
    assert (image.format, image.size) == ("JPEG", size)
    assert (result.width, result.height) == size
    assert result.format.content_type == "image/jpeg"
    assert result.format.extension == "jpg"
    center = (size[0] / 2, size[1] / 2)
    assert near(at(image, center), (220, 20, 20), 12)  # the image itself, never cropped


@pytest.mark.parametrize("name", ["shopee_product", "tokopedia_product", "print_a4"])
def test_product_and_print_formats_pad_with_white(name: str) -> None:
    image = Image.open(io.BytesIO(export_image(WIDE_RED, name).data))
    assert near(at(image, (image.width / 2, 3)), (255, 255, 255), 3)
    assert near(at(image, (image.width / 2, image.height - 3)), (255, 255, 255), 3)
    assert near(at(image, (3, image.height / 2)), (220, 20, 20), 12)  # full width: no side bars


def test_social_formats_fill_the_bars_with_the_image_blurred() -> None:
    image = Image.open(io.BytesIO(export_image(WIDE_RED, "instagram_story").data))
    bar = at(image, (540, 40))
    assert bar[0] > 120, bar  # darkened red, not white or black
    assert max(bar[1], bar[2]) < 60, bar


def test_print_a4_is_300_dpi() -> None:
    image = Image.open(io.BytesIO(export_image(WIDE_RED, "print_a4").data))
    assert image.info["dpi"] == pytest.approx((300, 300))


def test_original_passes_a_png_through_and_re_encodes_others() -> None:
    result = export_image(WIDE_RED, "original")
    assert result.data == WIDE_RED
    assert (result.width, result.height, result.format.content_type) == (1024, 512, "image/png")
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(buffer, "JPEG")
    converted = export_image(buffer.getvalue(), "original")
    assert Image.open(io.BytesIO(converted.data)).format == "PNG"
    assert (converted.width, converted.height) == (300, 200)


def test_transparency_is_flattened_on_white() -> None:
    clear = solid_png((400, 400), (0, 0, 0, 0), mode="RGBA")
    image = Image.open(io.BytesIO(export_image(clear, "instagram_feed").data))
    assert near(at(image, (540, 540)), (255, 255, 255), 3)


def test_the_same_input_gives_the_same_bytes() -> None:
    for name in EXPORT_FORMATS:
        assert export_image(WIDE_RED, name).data == export_image(WIDE_RED, name).data


def test_unknown_formats_and_broken_images_are_permanent_errors() -> None:
    with pytest.raises(InvalidRequest, match="unknown export format"):
        export_image(WIDE_RED, "myspace")
    with pytest.raises(InvalidRequest, match="cannot be decoded"):
        export_image(b"\x89PNG broken", "tiktok")


async def test_export_runs_from_trio() -> None:
    result = await export(WIDE_RED, "tiktok")
    assert (result.width, result.height) == (1080, 1920)
