"""Upload validation, re-encoding and thumbnails (SPEC §10), on images made in-test."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from PIL import Image, ImageCms, PngImagePlugin
from trio.testing import wait_all_tasks_blocked

from lumiku.errors import (
    ClientError,
    CorruptImage,
    DecompressionBomb,
    FileEmpty,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    InvalidFilename,
    StorageError,
    TypeMismatch,
    UnsupportedImage,
)
from lumiku.storage.images import (
    MAX_DECODED_BYTES,
    CleanImage,
    DecodeBudget,
    check_filename,
    store_with_thumbnail,
    thumbnail,
    thumbnail_sync,
    validate_upload,
    validate_upload_file,
    validate_upload_sync,
)
from lumiku.storage.local import LocalStorage
from tests.unit.storage.images_fixtures import (
    bilevel_png,
    encode,
    gps_exif,
    noise,
)

MAX_BYTES = 10_485_760  # the default storage.max_upload_bytes


def validate(data: bytes, filename: str, max_bytes: int = MAX_BYTES) -> CleanImage:
    return validate_upload_sync(data, filename, max_bytes=max_bytes)


def refused(error_class: type[ClientError], data: bytes, filename: str) -> ClientError:
    with pytest.raises(error_class) as caught:
        validate(data, filename)
    return caught.value


def assert_code(error: ClientError, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def is_blue(pixel: tuple[int, ...]) -> bool:
    return pixel[0] < 60 and pixel[1] < 60 and pixel[2] > 200


# --- each rejection, with its status and code -----------------------------------------------


def test_zero_bytes_is_file_empty() -> None:
    assert_code(refused(FileEmpty, b"", "a.png"), 400, "FILE_EMPTY")


def test_one_byte_over_the_limit_is_file_too_large() -> None:
    png_start = encode(Image.new("RGB", (300, 300)), "PNG")
    too_big = png_start + b"\x00" * (MAX_BYTES + 1 - len(png_start))
    assert len(too_big) == MAX_BYTES + 1
    error = refused(FileTooLarge, too_big, "a.png")
    assert_code(error, 413, "FILE_TOO_LARGE")
    assert error.extra["max_bytes"] == MAX_BYTES
    # Exactly the limit is accepted (Pillow ignores what follows the PNG's end), and what
    # comes back is the re-encoded image alone.
    at_limit = validate(too_big[:-1], "a.png")
    assert at_limit.width == 300
    assert len(at_limit.data) < 10_000


def test_png_bytes_named_jpg_is_type_mismatch() -> None:
    png = encode(Image.new("RGB", (300, 300)), "PNG")
    error = refused(TypeMismatch, png, "holiday.jpg")
    assert_code(error, 400, "TYPE_MISMATCH")
    assert error.extra == {"detected": "PNG", "extension": "jpg"}


def test_no_extension_is_type_mismatch() -> None:
    png = encode(Image.new("RGB", (300, 300)), "PNG")
    assert refused(TypeMismatch, png, "holiday").extra["extension"] == ""


def test_html_named_png_is_unsupported_media_type() -> None:
    html = b"<!doctype html><html><script>alert(1)</script></html>"
    error = refused(UnsupportedImage, html, "cat.png")
    assert_code(error, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert error.extra["allowed"] == ["JPEG", "PNG", "WEBP"]


def test_gif_is_unsupported_media_type() -> None:
    gif = encode(Image.new("P", (300, 300)), "GIF")
    assert_code(refused(UnsupportedImage, gif, "a.gif"), 415, "UNSUPPORTED_MEDIA_TYPE")


def test_truncated_jpeg_is_corrupt() -> None:
    jpeg = encode(noise(600, 600), "JPEG", quality=95)
    assert_code(refused(CorruptImage, jpeg[: len(jpeg) // 2], "a.jpg"), 400, "CORRUPT_IMAGE")


def test_magic_bytes_without_an_image_are_corrupt() -> None:
    assert_code(
        refused(CorruptImage, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "a.png"), 400, "CORRUPT_IMAGE"
    )


def test_a_10000px_square_png_is_a_decompression_bomb() -> None:
    bomb = bilevel_png(10_000, 10_000)
    assert len(bomb) < 50_000  # small on disk, 400 MB decoded
    error = refused(DecompressionBomb, bomb, "bomb.png")
    assert_code(error, 400, "DECOMPRESSION_BOMB")
    assert error.extra["max_decoded_bytes"] == MAX_DECODED_BYTES


def test_our_own_bomb_limit_trips_below_pillows() -> None:
    # 6000×5000 = 30 Mpx: under Pillow's MAX_IMAGE_PIXELS (89 Mpx, no warning from it), over
    # ours (120 MB decoded > 100 MiB). Checked from the header, before the side limit.
    assert Image.MAX_IMAGE_PIXELS > 6000 * 5000
    error = refused(DecompressionBomb, bilevel_png(6000, 5000), "bomb.png")
    assert "6000×5000" in error.detail


def test_100px_image_is_too_small() -> None:
    small = encode(Image.new("RGB", (100, 100)), "PNG")
    error = refused(ImageTooSmall, small, "a.png")
    assert_code(error, 400, "IMAGE_TOO_SMALL")
    assert error.extra == {"min_px": 256, "width": 100, "height": 100}


def test_one_side_below_256_is_too_small() -> None:
    assert_code(
        refused(ImageTooSmall, encode(Image.new("L", (300, 255)), "PNG"), "a.png"),
        400,
        "IMAGE_TOO_SMALL",
    )


def test_a_side_over_4096_is_too_large() -> None:
    wide = encode(Image.new("L", (4097, 300)), "PNG")
    error = refused(ImageTooLarge, wide, "a.png")
    assert_code(error, 400, "IMAGE_TOO_LARGE")
    assert error.extra["max_px"] == 4096


def test_the_size_limits_are_inclusive() -> None:
    assert validate(encode(Image.new("L", (256, 4096)), "PNG"), "edge.png").height == 4096


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd.png",
        "..",
        ".",
        "dir/a.png",
        "dir\\a.png",
        "a\x00.png",
        "a\n.png",
        "a\x85.png",
        "a\x7f.png",
        "",
        "x" * 252 + ".png",
    ],
)
def test_bad_filenames_are_invalid(filename: str) -> None:
    png = encode(Image.new("RGB", (300, 300)), "PNG")
    assert_code(refused(InvalidFilename, png, filename), 400, "INVALID_FILENAME")


@pytest.mark.parametrize(
    ("filename", "ext"),
    [
        ("My Photo (1).JPG", "jpg"),
        ("a.b.jpeg", "jpeg"),
        (".png", ""),
        ("noext", ""),
        ("ünï.webp", "webp"),
    ],
)
def test_acceptable_filenames_give_their_extension(filename: str, ext: str) -> None:
    assert check_filename(filename) == ext


# --- what is accepted ---------------------------------------------------------------------


def test_jpeg_with_gps_exif_comes_back_with_no_exif_and_upright() -> None:
    # Stored sideways: left half red, right half blue; orientation 6 = rotate 90° clockwise
    # to display, which brings the left half to the top.
    stored = Image.new("RGB", (400, 300), "blue")
    stored.paste((255, 0, 0), (0, 0, 200, 300))
    original = encode(stored, "JPEG", exif=gps_exif(orientation=6), quality=95)
    assert b"SpyCam" in original

    result = validate(original, "holiday.jpeg")

    assert (result.format, result.ext, result.content_type) == ("JPEG", "jpg", "image/jpeg")
    assert (result.width, result.height) == (300, 400)
    image = decoded(result.data)
    assert image.size == (300, 400)
    assert dict(image.getexif()) == {}
    assert "exif" not in image.info
    assert b"Exif" not in result.data
    assert b"SpyCam" not in result.data
    assert is_red(rgb(image, (150, 50)))
    assert is_blue(rgb(image, (150, 350)))


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("WEBP", "webp")])
def test_png_and_webp_lose_exif_icc_and_text(fmt: str, ext: str) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret-location")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    options = {"exif": gps_exif(), "icc_profile": srgb}
    if fmt == "PNG":
        options["pnginfo"] = text
    original = encode(Image.new("RGBA", (300, 280), (10, 20, 30, 128)), fmt, **options)
    assert b"SpyCam" in original

    result = validate(original, f"a.{ext}")

    image = decoded(result.data)
    assert result.format == fmt
    assert image.mode == "RGBA"  # transparency kept
    assert dict(image.getexif()) == {}
    assert not {"exif", "icc_profile", "Comment", "xmp"} & set(image.info)
    assert b"SpyCam" not in result.data
    assert b"secret-location" not in result.data


def test_an_icc_profile_is_applied_then_dropped() -> None:
    # A CMYK JPEG (print workflow) comes back as plain RGB.
    cmyk = encode(Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "JPEG")
    result = validate(cmyk, "print.jpg")
    image = decoded(result.data)
    assert image.mode == "RGB"
    assert is_red(rgb(image, (10, 10)))


def test_palette_transparency_survives() -> None:
    palette = Image.new("P", (300, 300), 0)
    result = validate(encode(palette, "PNG", transparency=0), "a.png")
    pixel = decoded(result.data).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    assert pixel[3] == 0


async def test_validate_upload_runs_the_decoding_off_the_event_loop() -> None:
    with trio.fail_after(20):
        result = await validate_upload(
            encode(noise(512, 512), "WEBP"), "a.WEBP", max_bytes=MAX_BYTES
        )
    assert (result.content_type, result.width) == ("image/webp", 512)


# --- thumbnails -----------------------------------------------------------------------------


def test_thumbnail_is_a_300px_centre_crop_jpeg() -> None:
    # 1000×400: green | red (the middle 400 px) | blue. Covering 300×300 scales to 750×300
    # and crops the middle 300, all inside the red band.
    wide = Image.new("RGB", (1000, 400), "green")
    wide.paste((255, 0, 0), (300, 0, 700, 400))
    wide.paste((0, 0, 255), (700, 0, 1000, 400))

    thumb = thumbnail_sync(encode(wide, "PNG"))

    image = decoded(thumb.data)
    assert (thumb.width, thumb.height, image.size) == (300, 300, (300, 300))
    assert (thumb.format, thumb.content_type, image.format) == ("JPEG", "image/jpeg", "JPEG")
    for corner in [(2, 2), (297, 2), (2, 297), (297, 297)]:
        assert is_red(rgb(image, corner)), corner


async def test_thumbnail_flattens_transparency_on_white() -> None:
    with trio.fail_after(20):
        thumb = await thumbnail(encode(Image.new("RGBA", (500, 500), (255, 0, 0, 0)), "PNG"))
    assert decoded(thumb.data).getpixel((150, 150)) == (255, 255, 255)


def test_thumbnail_refuses_a_bomb_and_other_formats() -> None:
    with pytest.raises(DecompressionBomb):
        thumbnail_sync(bilevel_png(6000, 5000))
    with pytest.raises(CorruptImage):
        thumbnail_sync(encode(Image.new("RGB", (300, 300)), "GIF"))


# --- storing --------------------------------------------------------------------------------


class FailingSecondPut(LocalStorage):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.puts = 0

    async def put(self, key: object, data: bytes, content_type: str) -> object:  # type: ignore[override]
        self.puts += 1
        if self.puts == 2:
            raise StorageError("disk went away")
        return await super().put(key, data, content_type)  # type: ignore[arg-type]


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_store_with_thumbnail_writes_both_under_the_owner(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    image = validate(encode(noise(400, 300), "PNG"), "a.png")
    with trio.fail_after(20):
        stored = await store_with_thumbnail(storage, image, app="test", user_id="u-1", group="p1")
    assert re.fullmatch(r"test/u-1/p1/[0-9a-f]{32}\.png", stored.key)
    assert re.fullmatch(r"test/u-1/p1/[0-9a-f]{32}\.jpg", stored.thumbnail_key)
    assert (stored.width, stored.height, stored.size_bytes) == (400, 300, len(image.data))
    assert await storage.get(stored.key) == image.data
    assert decoded(await storage.get(stored.thumbnail_key)).size == (300, 300)


async def test_a_failed_thumbnail_write_removes_the_image(tmp_path: Path) -> None:
    storage = FailingSecondPut(str(tmp_path))
    image = validate(encode(noise(400, 300), "PNG"), "a.png")
    with trio.fail_after(20), pytest.raises(StorageError, match="disk went away"):
        await store_with_thumbnail(storage, image, app="test", user_id="u-1")
    assert storage.puts == 2
    assert stored_files(tmp_path) == []


# --- from a spooled file, within the decode budget -------------------------------------------

SIDEWAYS = Image.new("RGB", (400, 300), "blue")
SIDEWAYS.paste((255, 0, 0), (0, 0, 200, 300))
PNG_300 = encode(Image.new("RGB", (300, 300)), "PNG")
JPEG_600 = encode(noise(600, 600), "JPEG", quality=95)
FILE_CASES = {
    "jpeg, exif orientation 6": (
        encode(SIDEWAYS, "JPEG", exif=gps_exif(orientation=6), quality=95),
        "a.jpg",
    ),
    "png, palette transparency": (
        encode(Image.new("P", (300, 300), 0), "PNG", transparency=0),
        "a.png",
    ),
    "webp": (encode(noise(512, 512), "WEBP"), "a.webp"),
    "empty": (b"", "a.png"),
    "too large": (PNG_300 + bytes(MAX_BYTES + 1 - len(PNG_300)), "a.png"),
    "type mismatch": (PNG_300, "a.jpg"),
    "not an image": (b"<html></html>", "a.png"),
    "truncated": (JPEG_600[: len(JPEG_600) // 2], "a.jpg"),
    "bomb": (bilevel_png(10_000, 10_000), "bomb.png"),
    "too small": (encode(Image.new("RGB", (100, 100)), "PNG"), "a.png"),
}


def outcome(run: Callable[[], CleanImage]) -> CleanImage | tuple[str, str]:
    try:
        return run()
    except ClientError as error:
        return (error.code, error.detail)


@pytest.mark.parametrize("case", FILE_CASES)
async def test_a_spooled_file_is_validated_as_its_bytes_are(tmp_path: Path, case: str) -> None:
    data, filename = FILE_CASES[case]
    path = tmp_path / "upload"
    path.write_bytes(data)
    with path.open("rb") as file:
        try:
            from_file: CleanImage | tuple[str, str] = await validate_upload_file(
                file, filename, max_bytes=MAX_BYTES
            )
        except ClientError as error:
            from_file = (error.code, error.detail)
        assert not file.closed  # the caller's to close
    assert from_file == outcome(lambda: validate(data, filename))


async def test_the_decode_budget_admits_in_order_while_it_fits() -> None:
    budget = DecodeBudget(100)
    admitted: list[str] = []
    done = {name: trio.Event() for name in "abcd"}

    async def decode(name: str, cost_bytes: int) -> None:
        async with budget.reserve(cost_bytes):
            admitted.append(name)
            await done[name].wait()

    async def arrive(nursery: trio.Nursery, name: str, cost_bytes: int) -> None:
        nursery.start_soon(decode, name, cost_bytes)
        await wait_all_tasks_blocked()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await arrive(nursery, "a", 60)
            await arrive(nursery, "b", 60)  # does not fit beside a
            await arrive(nursery, "c", 10)  # would fit, but waits its turn behind b
            assert (admitted, budget.reserved_bytes) == (["a"], 60)
            done["a"].set()
            await wait_all_tasks_blocked()
            assert (admitted, budget.reserved_bytes) == (["a", "b", "c"], 70)
            await arrive(nursery, "d", 1000)  # more than the whole budget: runs alone
            assert admitted == ["a", "b", "c"]
            done["b"].set()
            await wait_all_tasks_blocked()
            assert admitted == ["a", "b", "c"]
            done["c"].set()
            await wait_all_tasks_blocked()
            assert (admitted, budget.reserved_bytes) == (["a", "b", "c", "d"], 100)
            done["d"].set()
    assert budget.reserved_bytes == 0
