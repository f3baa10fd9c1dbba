"""Backgrounds: solid colour, uploaded image and procedural scenes behind a subject."""

from __future__ import annotations

import io

import attrs
import pytest
from PIL import Image, ImageDraw

from lumiku.providers.base import BackgroundRequest, InvalidRequest
from lumiku.providers.local import LocalProvider
from lumiku.providers.local.scene import render_scene, scene_kind

from .pixels import at, median, near, png, solid_png

SIZE = (600, 800)


def cut_out() -> bytes:
    """A transparent canvas with an opaque black square in the middle."""
    image = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle([250, 350, 350, 450], fill=(0, 0, 0, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def on_white() -> bytes:
    """The same square on a plain white backdrop, no transparency."""
    image = Image.new("RGB", SIZE, (255, 255, 255))
    ImageDraw.Draw(image).rectangle([250, 350, 350, 450], fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def render(request: BackgroundRequest) -> Image.Image:
    image = png(await LocalProvider().background(request))
    assert image.size == SIZE
    assert image.mode == "RGB"
    return image


async def test_solid_colour_fills_around_the_subject() -> None:
    image = await render(BackgroundRequest(cut_out(), "solid_color", color="#3366cc"))
    assert at(image, (5, 5)) == (0x33, 0x66, 0xCC)
    assert at(image, (590, 790)) == (0x33, 0x66, 0xCC)
    assert at(image, (300, 400)) == (0, 0, 0)


async def test_a_subject_on_a_plain_backdrop_is_keyed_out() -> None:
    image = await render(BackgroundRequest(on_white(), "solid_color", color="#00ff00"))
    assert at(image, (5, 5)) == (0, 255, 0)
    assert at(image, (300, 100)) == (0, 255, 0)
    assert at(image, (300, 400)) == (0, 0, 0)


async def test_a_subject_without_a_plain_backdrop_covers_everything() -> None:
    photo = Image.linear_gradient("L").resize(SIZE).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    image = await render(BackgroundRequest(buffer.getvalue(), "solid_color", color="#00ff00"))
    assert image.tobytes() == photo.tobytes()


async def test_upload_is_cropped_to_fill() -> None:
    upload = Image.new("RGB", (1600, 400), (200, 0, 0))
    ImageDraw.Draw(upload).rectangle([0, 0, 399, 399], fill=(0, 0, 200))  # cropped away
    buffer = io.BytesIO()
    upload.save(buffer, "JPEG", quality=95)
    image = await render(BackgroundRequest(cut_out(), "upload", upload=buffer.getvalue()))
    assert near(at(image, (5, 5)), (200, 0, 0), 10)
    assert near(at(image, (590, 790)), (200, 0, 0), 10)
    assert at(image, (300, 400)) == (0, 0, 0)


async def test_an_undecodable_upload_is_a_permanent_error() -> None:
    with pytest.raises(InvalidRequest, match="background image"):
        await LocalProvider().background(BackgroundRequest(cut_out(), "upload", upload=b"GIF8"))


def is_blue(color: tuple[int, ...]) -> bool:
    return color[2] > color[0] + 30


async def test_a_beach_prompt_paints_sea_and_sand() -> None:
    image = await render(BackgroundRequest(cut_out(), "ai_generate", prompt="beach", seed=1))
    w, h = SIZE
    sea = median(image, (0, round(0.69 * h), 120, round(0.71 * h)))
    sand = median(image, (0, round(0.93 * h), 120, h))
    assert is_blue(sea), sea
    assert sand[0] > sand[1] > sand[2], sand
    assert sand[0] > 180, sand
    assert is_blue(median(image, (0, 0, w, 20)))  # a day sky


@pytest.mark.parametrize(
    ("prompt", "check"),
    [
        ("pantai saat senja", lambda top, bottom: top[2] > top[1] and bottom[0] > bottom[2]),
        ("city skyline at night", lambda top, bottom: sum(top) < 150),
        ("forest", lambda top, bottom: bottom[1] > bottom[0] and bottom[1] > bottom[2]),
        ("snowy mountains in winter", lambda top, bottom: min(bottom) > 180),
        ("studio", lambda top, bottom: abs(top[0] - top[2]) < 40),
    ],
)
def test_prompt_words_pick_the_scene(prompt: str, check: object) -> None:
    image = render_scene(prompt, 400, 600, seed=3)
    top = median(image, (0, 0, 400, 30))
    bottom = median(image, (0, 560, 400, 600))
    assert callable(check)
    assert check(top, bottom), (prompt, top, bottom)


def test_scene_words_are_read_in_english_and_indonesian() -> None:
    assert scene_kind("a beach at sunset") == ("sunset", "beach")
    assert scene_kind("pantai saat senja") == ("sunset", "beach")
    assert scene_kind("hutan di malam hari") == ("night", "forest")
    assert scene_kind("sawah") == (None, "ricefield")
    assert scene_kind("something dreamy") == (None, None)


def test_scenes_are_deterministic_and_vary_by_seed() -> None:
    for prompt in ("city", "something dreamy"):
        first = render_scene(prompt, 400, 300, seed=1).tobytes()
        assert render_scene(prompt, 400, 300, seed=1).tobytes() == first
        assert render_scene(prompt, 400, 300, seed=2).tobytes() != first


async def test_stages_are_reported_in_order() -> None:
    stages: list[str] = []

    async def report(stage: str) -> None:
        stages.append(stage)

    provider = LocalProvider()
    await provider.background(BackgroundRequest(cut_out(), "solid_color", color="#000000"), report)
    assert stages == ["decoding subject", "filling colour", "compositing", "encoding"]
    stages.clear()
    await provider.background(BackgroundRequest(cut_out(), "ai_generate", prompt="x"), report)
    assert stages == ["decoding subject", "painting scene", "compositing", "encoding"]


def test_requests_are_validated() -> None:
    subject = solid_png((4, 4), (0, 0, 0))
    with pytest.raises(InvalidRequest, match="#RRGGBB"):
        BackgroundRequest(subject, "solid_color", color="red")
    with pytest.raises(InvalidRequest, match="#RRGGBB"):
        BackgroundRequest(subject, "solid_color")
    with pytest.raises(InvalidRequest, match="upload"):
        BackgroundRequest(subject, "upload")
    with pytest.raises(InvalidRequest, match="mode"):
        BackgroundRequest(subject, "blur")
    with pytest.raises(InvalidRequest, match="empty"):
        BackgroundRequest(b"", "ai_generate")
    request = BackgroundRequest(subject, "ai_generate", prompt="beach")
    assert request.seed_value == attrs.evolve(request, subject=b"other").seed_value
    assert request.seed_value != attrs.evolve(request, prompt="city").seed_value
