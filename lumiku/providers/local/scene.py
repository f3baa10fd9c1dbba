"""Procedural scenes from a background prompt's words (the local `ai_generate`).

The prompt picks a time of day (SKY_WORDS: day, sunset, night) and a setting (GROUND_WORDS:
beach, city, forest, mountain, park, rice field, snow, desert, studio), in English or
Indonesian ("pantai saat senja" = beach at sunset). A setting without a time is drawn by
day; a prompt naming neither gets a seeded gradient with soft shapes. The seed places the
details (buildings, trees, waves, stars), so variations differ.
"""

from __future__ import annotations

import random
from typing import Final

from PIL import Image, ImageDraw

from lumiku.providers.local import canvas, palette
from lumiku.providers.local.canvas import disc
from lumiku.providers.local.palette import RGB, mix, shade

SKY_WORDS: Final = {
    "day": "day",
    "sunny": "day",
    "morning": "day",
    "noon": "day",
    "pagi": "day",
    "siang": "day",
    "sunset": "sunset",
    "sunrise": "sunset",
    "dusk": "sunset",
    "dawn": "sunset",
    "evening": "sunset",
    "golden hour": "sunset",
    "senja": "sunset",
    "sore": "sunset",
    "night": "night",
    "starry": "night",
    "stars": "night",
    "midnight": "night",
    "malam": "night",
}
GROUND_WORDS: Final = {
    "beach": "beach",
    "sea": "beach",
    "ocean": "beach",
    "shore": "beach",
    "coast": "beach",
    "tropical": "beach",
    "pantai": "beach",
    "laut": "beach",
    "city": "city",
    "urban": "city",
    "street": "city",
    "skyline": "city",
    "downtown": "city",
    "kota": "city",
    "forest": "forest",
    "jungle": "forest",
    "woods": "forest",
    "trees": "forest",
    "hutan": "forest",
    "mountain": "mountain",
    "mountains": "mountain",
    "hills": "mountain",
    "gunung": "mountain",
    "park": "park",
    "garden": "park",
    "meadow": "park",
    "field": "park",
    "taman": "park",
    "rice field": "ricefield",
    "rice terrace": "ricefield",
    "paddy": "ricefield",
    "sawah": "ricefield",
    "snow": "snow",
    "snowy": "snow",
    "winter": "snow",
    "salju": "snow",
    "desert": "desert",
    "dunes": "desert",
    "gurun": "desert",
    "studio": "studio",
    "office": "studio",
    "room": "studio",
    "indoor": "studio",
    "kantor": "studio",
}
SKIES: Final[dict[str, tuple[RGB, RGB]]] = {
    "day": ((84, 150, 226), (206, 232, 250)),
    "sunset": ((62, 44, 112), (252, 160, 84)),
    "night": ((8, 12, 36), (38, 52, 104)),
}


def scene_kind(prompt: str) -> tuple[str | None, str | None]:
    """(time of day, setting) named by `prompt`, each None when it names none."""
    return palette.match(prompt, SKY_WORDS), palette.match(prompt, GROUND_WORDS)


def render_scene(prompt: str, width: int, height: int, seed: int) -> Image.Image:
    """The scene for `prompt` as an RGB image of `width` × `height`."""
    sky, ground = scene_kind(prompt)
    rng = random.Random(seed)
    size = (width, height)
    if ground is None and sky is None:
        return _abstract(size, rng, prompt)
    if ground == "studio":
        return _studio(size, rng)
    sky = sky or "day"
    image = canvas.vertical_gradient(size, *SKIES[sky])
    draw = ImageDraw.Draw(image, "RGBA")
    horizon = height * rng.uniform(0.55, 0.62)
    _sky_details(draw, sky, size, horizon, rng)
    if ground is not None:
        _GROUNDS[ground](image, draw, sky, size, horizon, rng)
    return image


def _abstract(size: tuple[int, int], rng: random.Random, prompt: str) -> Image.Image:
    top, bottom = palette.pick(palette.SCENE_PALETTE, prompt, rng.random())
    image = canvas.vertical_gradient(size, top, bottom)
    draw = ImageDraw.Draw(image, "RGBA")
    w, h = size
    for _ in range(rng.randint(6, 12)):
        color = mix(top, bottom, rng.random())
        color = shade(color, rng.uniform(0.8, 1.25))
        r = rng.uniform(0.05, 0.3) * min(w, h)
        disc(draw, (rng.uniform(0, w), rng.uniform(0, h)), r, (*color, rng.randint(50, 120)))
    return image


def _studio(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    wall = palette.pick(
        ((226, 222, 214), (208, 216, 226), (220, 210, 200), (90, 96, 110)), rng.random()
    )
    image = canvas.radial_gradient(size, shade(wall, 1.1), shade(wall, 0.8))
    floor_y = round(h * rng.uniform(0.68, 0.74))
    floor = canvas.vertical_gradient((w, h - floor_y), shade(wall, 0.85), shade(wall, 0.65))
    image.paste(floor, (0, floor_y))
    draw = ImageDraw.Draw(image, "RGBA")
    draw.ellipse([w * 0.28, floor_y + h * 0.08, w * 0.72, floor_y + h * 0.16], fill=(0, 0, 0, 40))
    return image


def _sky_details(
    draw: ImageDraw.ImageDraw, sky: str, size: tuple[int, int], horizon: float, rng: random.Random
) -> None:
    w, h = size
    side = min(w, h)
    if sky == "night":
        for _ in range(int(120 * w * h / 1_000_000) + 20):
            disc(
                draw,
                (rng.uniform(0, w), rng.uniform(0, horizon)),
                rng.uniform(0.6, 1.8),
                (255, 255, 240, rng.randint(120, 255)),
            )
        disc(
            draw,
            (w * rng.uniform(0.15, 0.85), h * rng.uniform(0.08, 0.2)),
            0.05 * side,
            (246, 240, 214),
        )
        return
    if sky == "sunset":
        x = w * rng.uniform(0.25, 0.75)
        for radius, alpha in ((0.22, 40), (0.15, 70), (0.09, 255)):
            disc(draw, (x, horizon - 0.02 * h), radius * side, (255, 214, 120, alpha))
    else:
        disc(
            draw,
            (w * rng.uniform(0.1, 0.9), h * rng.uniform(0.08, 0.18)),
            0.05 * side,
            (255, 246, 200),
        )
    for _ in range(rng.randint(2, 5)):  # clouds
        cx, cy = rng.uniform(0, w), rng.uniform(0.05, 0.35) * h
        tint = (255, 255, 255, 150) if sky == "day" else (255, 200, 190, 110)
        for _ in range(5):
            disc(
                draw,
                (cx + rng.uniform(-0.08, 0.08) * side, cy + rng.uniform(-0.015, 0.015) * side),
                rng.uniform(0.03, 0.06) * side,
                tint,
            )


def _night(color: RGB, sky: str) -> RGB:
    return (
        shade(color, 0.45)
        if sky == "night"
        else mix(color, (250, 150, 90), 0.25)
        if sky == "sunset"
        else color
    )


def _beach(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    shore = round(horizon + (h - horizon) * 0.4)
    sea = canvas.vertical_gradient(
        (w, shore - round(horizon)), _night((24, 92, 160), sky), _night((70, 180, 200), sky)
    )
    image.paste(sea, (0, round(horizon)))
    sand = canvas.vertical_gradient(
        (w, h - shore), _night((238, 216, 172), sky), _night((214, 184, 134), sky)
    )
    image.paste(sand, (0, shore))
    for _ in range(rng.randint(6, 12)):
        y = rng.uniform(horizon + 4, shore - 4)
        x = rng.uniform(0, w)
        draw.arc(
            [x - 0.08 * w, y - 6, x + 0.08 * w, y + 6], 200, 340, fill=(255, 255, 255, 120), width=2
        )
    step = max(w // 40, 4)
    for x in range(0, w + step, step):
        disc(draw, (x, shore + rng.uniform(-3, 3)), step * 0.6, (255, 255, 255, 170))


def _city(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    street = horizon + (h - horizon) * 0.35
    x = -rng.uniform(0, 0.05) * w
    while x < w:
        bw = rng.uniform(0.06, 0.14) * w
        top = street - rng.uniform(0.15, 0.45) * h
        body = _night(
            palette.pick(
                ((92, 104, 128), (120, 128, 146), (76, 84, 104), (140, 136, 130)), rng.random()
            ),
            sky,
        )
        draw.rectangle([x, top, x + bw, street], fill=body)
        lit = sky != "day"
        win = max(bw / 8, 3)
        wy = top + win
        while wy < street - 2 * win:
            wx = x + win
            while wx < x + bw - win:
                on = rng.random() < (0.55 if lit else 0.0)
                color = (255, 214, 120) if on else shade(body, 1.25 if not lit else 0.8)
                draw.rectangle([wx, wy, wx + win * 0.8, wy + win * 1.1], fill=color)
                wx += win * 1.8
            wy += win * 2.0
        x += bw + rng.uniform(0.0, 0.02) * w
    road = canvas.vertical_gradient(
        (w, h - round(street)), _night((90, 92, 98), sky), _night((52, 54, 60), sky)
    )
    image.paste(road, (0, round(street)))


def _pine(draw: ImageDraw.ImageDraw, x: float, base: float, height: float, color: RGB) -> None:
    half = height * 0.28
    for tier in range(3):
        top = base - height * (0.45 + 0.25 * tier)
        bottom = base - height * 0.25 * tier
        draw.polygon(
            [
                (x - half * (1 - 0.2 * tier), bottom),
                (x + half * (1 - 0.2 * tier), bottom),
                (x, top),
            ],
            fill=color,
        )
    draw.rectangle(
        [x - height * 0.03, base - height * 0.05, x + height * 0.03, base + height * 0.04],
        fill=shade(color, 0.6),
    )


def _forest(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    ground = canvas.vertical_gradient(
        (w, h - round(horizon)), _night((92, 150, 72), sky), _night((54, 104, 48), sky)
    )
    image.paste(ground, (0, round(horizon)))
    for row, (tone, scale) in enumerate(
        (((70, 120, 90), 0.22), ((40, 96, 60), 0.3), ((26, 72, 40), 0.42))
    ):
        base = horizon + row * 0.06 * h
        x = rng.uniform(-0.05, 0.0) * w
        while x < w * 1.05:
            _pine(draw, x, base, rng.uniform(0.8, 1.2) * scale * h, _night(tone, sky))
            x += rng.uniform(0.05, 0.11) * w


def _mountain(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    for layer, tone in enumerate(((150, 170, 200), (104, 124, 156), (70, 90, 110))):
        x = -rng.uniform(0.1, 0.3) * w
        base = horizon + layer * 0.05 * h
        while x < w:
            span = rng.uniform(0.3, 0.55) * w
            peak = base - rng.uniform(0.15, 0.3) * h
            color = _night(tone, sky)
            draw.polygon([(x, base), (x + span / 2, peak), (x + span, base)], fill=color)
            cap = (peak - base) * -0.22
            draw.polygon(
                [
                    (x + span / 2 - span * 0.09, peak + cap),
                    (x + span / 2, peak),
                    (x + span / 2 + span * 0.09, peak + cap),
                ],
                fill=_night((244, 246, 250), sky),
            )
            x += span * rng.uniform(0.5, 0.8)
    meadow = canvas.vertical_gradient(
        (w, h - round(horizon + 0.1 * h)), _night((110, 150, 80), sky), _night((70, 110, 56), sky)
    )
    image.paste(meadow, (0, round(horizon + 0.1 * h)))


def _park(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    grass = canvas.vertical_gradient(
        (w, h - round(horizon)), _night((120, 180, 90), sky), _night((72, 136, 60), sky)
    )
    image.paste(grass, (0, round(horizon)))
    for _ in range(rng.randint(3, 6)):
        x, height = rng.uniform(0, w), rng.uniform(0.15, 0.3) * h
        base = horizon + rng.uniform(0.0, 0.05) * h
        draw.rectangle(
            [x - height * 0.05, base - height * 0.5, x + height * 0.05, base],
            fill=_night((100, 70, 44), sky),
        )
        for _ in range(4):
            disc(
                draw,
                (x + rng.uniform(-0.2, 0.2) * height, base - height * rng.uniform(0.6, 0.85)),
                height * rng.uniform(0.2, 0.3),
                _night((56, 124, 60), sky),
            )
    for _ in range(int(60 * w * h / 1_000_000) + 10):
        color = palette.pick(
            ((240, 90, 100), (250, 220, 90), (255, 255, 255), (200, 120, 220)), rng.random()
        )
        disc(
            draw,
            (rng.uniform(0, w), rng.uniform(horizon + 0.08 * h, h)),
            0.004 * min(w, h) + 1,
            _night(color, sky),
        )


def _ricefield(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    y, band, i = horizon, 0.04 * h, 0
    while y < h:
        tone = _night(((132, 190, 76), (104, 170, 64), (150, 200, 90))[i % 3], sky)
        amp = rng.uniform(0.005, 0.02) * h
        points = [(x, y + amp * ((x / w * 3 + i) % 2 - 1)) for x in range(0, w + 40, 40)]
        draw.polygon([*points, (w, h), (0, h)], fill=tone)
        draw.line(points, fill=shade(tone, 0.7), width=max(round(band * 0.08), 1))
        y += band
        band *= 1.25
        i += 1


def _snow(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    ground = canvas.vertical_gradient(
        (w, h - round(horizon)), _night((236, 242, 250), sky), _night((206, 218, 234), sky)
    )
    image.paste(ground, (0, round(horizon)))
    x = rng.uniform(-0.05, 0.0) * w
    while x < w:
        _pine(
            draw,
            x,
            horizon + rng.uniform(0, 0.05) * h,
            rng.uniform(0.15, 0.3) * h,
            _night((40, 84, 70), sky),
        )
        x += rng.uniform(0.08, 0.18) * w
    for _ in range(int(80 * w * h / 1_000_000) + 20):
        disc(draw, (rng.uniform(0, w), rng.uniform(0, h)), rng.uniform(1, 3), (255, 255, 255, 200))


def _desert(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    sky: str,
    size: tuple[int, int],
    horizon: float,
    rng: random.Random,
) -> None:
    w, h = size
    sand = canvas.vertical_gradient(
        (w, h - round(horizon)), _night((232, 196, 140), sky), _night((206, 160, 100), sky)
    )
    image.paste(sand, (0, round(horizon)))
    for i in range(4):
        cx, top = rng.uniform(0, w), horizon + i * 0.08 * h - rng.uniform(0.02, 0.06) * h
        tone = _night(((226, 186, 128), (214, 170, 110), (200, 154, 96), (190, 144, 88))[i], sky)
        draw.ellipse([cx - 0.7 * w, top, cx + 0.7 * w, top + 0.5 * h], fill=tone)


_GROUNDS: Final = {
    "beach": _beach,
    "city": _city,
    "forest": _forest,
    "mountain": _mountain,
    "park": _park,
    "ricefield": _ricefield,
    "snow": _snow,
    "desert": _desert,
}
