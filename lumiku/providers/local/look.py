"""An avatar request's attributes resolved into one concrete look (colours, shapes, outfit).

`resolve_look` is pure and deterministic. What each attribute drives:

- `skin_tone` → skin colour (fair, tan, sawo matang, dark, …; "light olive" blends);
- `hair_color` → hair colour, `hair_style` → length (bald, buzz, short, medium, long),
  texture (straight, wavy, curly, afro) and extras (ponytail, bun, braids, spiky, hijab);
- `eye_color` → iris colour; `style` → the outfit (suit, tee, jersey, fashion, batik,
  hoodie) and, when it names one, its colour ("navy suit");
- `body_type` → shoulder and waist width; `gender` → face and jaw shape, brows, shoulders,
  lips, the default hair length; `age_range` → face roundness and eye size (young), grey
  hair and lines (mature);
- `ethnicity` never maps to a fixed look: it only varies the seeded choice of features the
  other attributes leave open;
- the prompt's words add glasses and a beard when it asks for them.
Unset attributes are picked from plausible palettes by the seed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs

from lumiku.providers.local import palette

if TYPE_CHECKING:
    from lumiku.providers.base import AvatarRequest
    from lumiku.providers.local.palette import RGB

_NUMBER: Final = re.compile(r"\d+")
_GLASSES: Final = {"glasses": True, "spectacles": True, "eyeglasses": True, "kacamata": True}
_BEARD: Final = {"beard": True, "bearded": True, "jenggot": True, "brewok": True}


@attrs.frozen
class HairStyle:
    length: str  # bald | buzz | short | medium | long
    texture: str  # straight | wavy | curly | afro
    extra: str  # "" | ponytail | bun | braids | spiky | hijab


@attrs.frozen
class Look:
    gender: str  # male | female | neutral
    age: str  # young | adult | mature
    skin: RGB
    hair: RGB
    eyes: RGB
    lips: RGB
    clothing: RGB
    accent: RGB
    outfit: str
    hair_style: HairStyle
    shoulders: float  # added to the average shoulder half-width (fraction of the portrait)
    waist: float
    glasses: bool
    beard: bool
    backdrop: tuple[RGB, RGB]


def resolve_look(request: AvatarRequest) -> Look:
    a = request.attributes
    seed = request.seed_value
    salt = (seed, a.ethnicity or "")
    gender = palette.match(a.gender, palette.GENDER_WORDS) or "neutral"
    age = _age(a.age_range)
    skin = _skin(a.skin_tone, salt)
    hair = palette.color_or_pick(a.hair_color, palette.HAIR_COLORS, palette.NATURAL_HAIR, *salt)
    if age == "mature":
        # Greying: all grey unless a colour was asked for, then visibly salted.
        hair = palette.GREY_HAIR if not a.hair_color else palette.mix(hair, palette.GREY_HAIR, 0.4)
    eyes = palette.color_or_pick(a.eye_color, palette.EYE_COLORS, palette.EYE_PALETTE, *salt)
    outfit = _outfit(a.style, salt)
    clothing = palette.named_color(a.style, palette.CLOTHING_COLORS) or palette.pick(
        palette.OUTFIT_PALETTES[outfit], a.style or "", *salt, "clothing"
    )
    accent = palette.pick(
        ((236, 236, 232), (200, 160, 60), (150, 30, 40), (30, 40, 70)), *salt, "accent"
    )
    shoulders, waist = _body(a.body_type, salt)
    lip_tint = (180, 70, 80) if gender == "female" else (150, 80, 76)
    return Look(
        gender=gender,
        age=age,
        skin=skin,
        hair=hair,
        eyes=eyes,
        lips=palette.mix(skin, lip_tint, 0.55 if gender == "female" else 0.35),
        clothing=clothing,
        accent=accent if accent != clothing else (236, 236, 232),
        outfit=outfit,
        hair_style=_hair_style(a.hair_style, gender, salt),
        shoulders=shoulders + {"male": 0.035, "female": -0.03}.get(gender, 0.0),
        waist=waist,
        glasses=palette.match(request.prompt, _GLASSES) is not None,
        beard=palette.match(request.prompt, _BEARD) is not None,
        backdrop=palette.pick(palette.SCENE_PALETTE[:-1], *salt, a.style or "", "backdrop"),
    )


def _age(text: str | None) -> str:
    named = palette.match(text, palette.AGE_WORDS)
    if named is not None:
        return named
    numbers = [int(n) for n in _NUMBER.findall(text or "")]
    if numbers:
        return "young" if numbers[0] < 20 else "mature" if numbers[0] >= 50 else "adult"
    return "adult"


def _skin(text: str | None, salt: tuple[object, ...]) -> RGB:
    """Every skin word named, blended ("light olive"); else a pick from real skin tones."""
    found = [palette.SKIN_TONES[w] for w in _skin_phrases(text)]
    if not found:
        return (
            palette.pick(palette.SKIN_PALETTE, text)
            if text
            else palette.pick(palette.SKIN_PALETTE, *salt, "skin")
        )
    color = found[0]
    for other in found[1:]:
        color = palette.mix(color, other, 0.5)
    return color


def _skin_phrases(text: str | None) -> list[str]:
    rest = text or ""
    out = []
    while (found := palette.match_phrase(rest, palette.SKIN_TONES)) is not None:
        out.append(found[0])
        rest = re.sub(rf"\b{re.escape(found[0])}\b", " ", rest.lower())
    return out


def _outfit(text: str | None, salt: tuple[object, ...]) -> str:
    named = palette.match(text, palette.OUTFIT_WORDS)
    if named is not None:
        return named
    return (
        palette.pick(palette.OUTFITS, text)
        if text
        else palette.pick(palette.OUTFITS, *salt, "outfit")
    )


def _body(text: str | None, salt: tuple[object, ...]) -> tuple[float, float]:
    named = palette.match(text, palette.BODY_TYPES)
    if named is not None:
        return named
    if text:
        return palette.pick(palette.BODY_PALETTE, text)
    return (0.0, 0.0)


def _hair_style(text: str | None, gender: str, salt: tuple[object, ...]) -> HairStyle:
    length = palette.match(text, palette.HAIR_LENGTH_WORDS)
    texture = palette.match(text, palette.HAIR_TEXTURE_WORDS)
    extra = palette.match(text, palette.HAIR_EXTRA_WORDS)
    if text and length is None and texture is None and extra is None:
        return HairStyle(*palette.pick(palette.HAIR_STYLE_PALETTE, text))
    if length is None:
        if texture == "afro":
            length = "medium"
        elif extra in ("ponytail", "braids") or gender == "female":
            length = "long"
        elif gender == "male":
            length = "short"
        else:
            length = palette.pick(("short", "medium", "long"), *salt, "hair length")
    return HairStyle(length, texture or "straight", extra or "")
