"""The local avatar: deterministic, sized as asked, and its attributes visibly drive it."""

from __future__ import annotations

import attrs
import pytest
import trio

from lumiku.providers.base import AvatarAttributes, AvatarRequest, InvalidRequest
from lumiku.providers.local import LocalProvider
from lumiku.providers.local.avatar import STAGES, layout_for, render_avatar
from lumiku.providers.local.look import resolve_look
from lumiku.providers.local.palette import EYE_COLORS, GREY_HAIR, HAIR_COLORS, SKIN_TONES

from .pixels import at, median, near, png

BASE = AvatarRequest(
    "a friendly portrait",
    AvatarAttributes(gender="female", hair_style="short", style="casual", age_range="adult"),
    width=512,
    height=512,
    seed=42,
)


def with_attributes(**changes: str | None) -> AvatarRequest:
    return attrs.evolve(BASE, attributes=attrs.evolve(BASE.attributes, **changes))


def hair_of(request: AvatarRequest) -> tuple[int, ...]:
    return median(png(render_avatar(request)), layout_for(request).hair_sample)


async def test_same_request_same_bytes_and_another_seed_another_image() -> None:
    provider = LocalProvider()
    first = await provider.avatar(BASE)
    assert await provider.avatar(BASE) == first
    other = await provider.avatar(attrs.evolve(BASE, seed=43))
    assert other != first
    assert png(first).tobytes() != png(other).tobytes()


def test_without_a_seed_it_is_derived_from_prompt_and_attributes() -> None:
    unseeded = attrs.evolve(BASE, seed=None)
    assert render_avatar(unseeded) == render_avatar(attrs.evolve(BASE, seed=None))
    assert unseeded.seed_value != attrs.evolve(unseeded, prompt="another prompt").seed_value
    changed = attrs.evolve(unseeded, attributes=attrs.evolve(BASE.attributes, style="sports"))
    assert unseeded.seed_value != changed.seed_value


@pytest.mark.parametrize(("width", "height"), [(512, 512), (600, 900), (2048, 512), (1024, 1024)])
def test_sizes_are_honoured(width: int, height: int) -> None:
    image = png(render_avatar(attrs.evolve(BASE, width=width, height=height)))
    assert image.size == (width, height)
    assert image.mode == "RGB"


@pytest.mark.parametrize("side", [511, 2049, 0])
def test_sizes_outside_512_2048_are_refused(side: int) -> None:
    with pytest.raises(InvalidRequest, match="width"):
        attrs.evolve(BASE, width=side)


def test_hair_colour_drives_the_hair() -> None:
    red = hair_of(with_attributes(hair_color="red"))
    black = hair_of(with_attributes(hair_color="black"))
    blonde = hair_of(with_attributes(hair_color="blonde"))
    assert near(red, HAIR_COLORS["red"]), red
    assert near(black, HAIR_COLORS["black"]), black
    assert near(blonde, HAIR_COLORS["blonde"]), blonde


def test_css_colour_words_and_modifiers_work_for_hair() -> None:
    assert near(hair_of(with_attributes(hair_color="teal")), (0, 128, 128))
    dark_blue = hair_of(with_attributes(hair_color="dark blue"))
    blue = hair_of(with_attributes(hair_color="blue"))
    assert sum(dark_blue) < sum(blue)


def test_skin_tone_drives_the_skin() -> None:
    for tone in ("fair", "tan", "dark", "sawo matang"):
        request = with_attributes(skin_tone=tone)
        skin = at(png(render_avatar(request)), layout_for(request).skin_sample)
        assert near(skin, SKIN_TONES[tone]), (tone, skin)


def test_eye_colour_drives_both_irises() -> None:
    for name in ("blue", "green", "brown"):
        request = with_attributes(eye_color=name)
        image, layout = png(render_avatar(request)), layout_for(request)
        for eye in (0, 1):
            assert near(at(image, layout.iris_sample(eye)), EYE_COLORS[name]), (name, eye)


def test_style_names_the_clothing_colour() -> None:
    for style, color in (("casual red", (186, 40, 46)), ("professional navy suit", (30, 44, 86))):
        request = with_attributes(style=style)
        image = png(render_avatar(request))
        assert near(at(image, layout_for(request).clothing_sample), color), style


def test_mature_age_turns_hair_grey_unless_a_colour_is_asked_for() -> None:
    assert near(hair_of(with_attributes(age_range="mature")), GREY_HAIR)
    assert near(hair_of(with_attributes(age_range="elderly")), GREY_HAIR)
    salted = hair_of(with_attributes(age_range="mature", hair_color="black"))
    assert not near(salted, HAIR_COLORS["black"], 30)
    assert not near(salted, GREY_HAIR, 30)


def test_bald_shows_skin_where_hair_would_be() -> None:
    request = with_attributes(hair_style="bald", hair_color="black")
    crown = median(png(render_avatar(request)), layout_for(request).hair_sample)
    assert near(crown, resolve_look(request).skin, 20)


def test_long_hair_falls_beside_the_neck_and_short_hair_does_not() -> None:
    def beside_neck(style: str) -> tuple[int, ...]:
        request = with_attributes(hair_style=style, hair_color="red")
        lay = layout_for(request)
        return at(png(render_avatar(request)), (lay.cx - 1.12 * lay.rx, lay.cy + 1.3 * lay.ry))

    assert near(beside_neck("long straight"), HAIR_COLORS["red"], 40)
    assert not near(beside_neck("short"), HAIR_COLORS["red"], 60)


def clothing_width(request: AvatarRequest, row_offset: float) -> int:
    image = png(render_avatar(request))
    lay = layout_for(request)
    clothing = resolve_look(request).clothing
    y = round(lay.shoulder_y + row_offset * lay.side)
    return sum(near(at(image, (x, y)), clothing, 10) for x in range(image.width))


def test_gender_and_body_type_change_the_shoulders() -> None:
    male = clothing_width(with_attributes(gender="male", style="casual red"), 0.12)
    female = clothing_width(with_attributes(gender="female", style="casual red"), 0.12)
    assert male > female * 1.1
    plus = clothing_width(with_attributes(body_type="plus size", style="casual red"), 0.28)
    slim = clothing_width(with_attributes(body_type="slim", style="casual red"), 0.28)
    assert plus > slim * 1.2


def test_unknown_free_text_maps_deterministically() -> None:
    look = resolve_look(with_attributes(hair_color="zebra-striped", hair_style="windswept"))
    again = resolve_look(with_attributes(hair_color="zebra-striped", hair_style="windswept"))
    assert look == again
    other_seed = resolve_look(attrs.evolve(with_attributes(hair_color="zebra-striped"), seed=7))
    assert other_seed.hair == look.hair  # named by the text, not by the seed


def test_attributes_are_free_text_of_at_most_50_characters() -> None:
    assert AvatarAttributes(hair_color="  dark   brown ").hair_color == "dark brown"
    assert AvatarAttributes(hair_color="   ").hair_color is None
    with pytest.raises(InvalidRequest, match="hair_color"):
        AvatarAttributes(hair_color="x" * 51)
    values = {"gender": "male", "eye_color": "blue", "prompt": "ignored", "skin_tone": None}
    attributes = AvatarAttributes.from_mapping(values)
    assert attributes.as_dict() == {"gender": "male", "eye_color": "blue"}


async def test_stages_are_reported_in_order_and_the_work_runs_in_threads() -> None:
    stages: list[str] = []
    limiter = trio.to_thread.current_default_thread_limiter()
    ticks, threads_busy, done = 0, 0, False

    async def report(stage: str) -> None:
        stages.append(stage)

    async def ticker() -> None:
        nonlocal ticks, threads_busy
        while not done:
            ticks += 1
            threads_busy = max(threads_busy, limiter.borrowed_tokens)
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        data = await LocalProvider().avatar(attrs.evolve(BASE, width=2048, height=2048), report)
        done = True
    assert stages == list(STAGES)
    assert png(data).size == (2048, 2048)
    # The event loop kept running while the stages drew: they were in worker threads.
    assert threads_busy >= 1
    assert ticks > 5 * len(STAGES)
