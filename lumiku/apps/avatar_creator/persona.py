"""An avatar's persona and appearance (SPEC §8.1), their rules, and the provider prompt.

Shared by request bodies (`requests.py`, flat fields such as `persona_age`) and the bundled
presets (`presets.py`, nested `persona.age`): the rules take the field names to report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.apps import fields

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lumiku.apps.fields import Problems

GENDERS: Final = ("male", "female", "unisex")
AGE_RANGES: Final = ("young", "adult", "mature")
FREE_ATTRIBUTES: Final = (
    "ethnicity",
    "body_type",
    "hair_style",
    "hair_color",
    "eye_color",
    "skin_tone",
    "style",
)
ATTRIBUTE_MAX: Final = 50
PERSONA_NAME_MAX: Final = 100
PERSONA_AGE_MIN: Final = 1
PERSONA_AGE_MAX: Final = 120
PERSONALITY_MAX_ITEMS: Final = 10
TRAIT_MAX: Final = 50
PERSONA_BACKGROUND_MAX: Final = 500
PROMPT_MIN: Final = 10
PROMPT_MAX: Final = 2000
# The provider prompt: the user's prompt (≤ 2000) always whole, the persona and appearance
# before it shortened to fit.
PROVIDER_PROMPT_MAX: Final = 2500


@attrs.frozen
class Persona:
    name: str | None = None
    age: int | None = None
    personality: tuple[str, ...] = ()
    background: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "age": self.age,
            "personality": list(self.personality),
            "background": self.background,
        }


@attrs.frozen
class Attributes:
    gender: str | None = None
    age_range: str | None = None
    ethnicity: str | None = None
    body_type: str | None = None
    hair_style: str | None = None
    hair_color: str | None = None
    eye_color: str | None = None
    skin_tone: str | None = None
    style: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_persona(
    problems: Problems,
    *,
    name: str | None,
    age: int | None,
    personality: Sequence[str] | None,
    background: str | None,
    prefix: str = "persona_",
) -> Persona:
    """The persona cleaned; problems named `<prefix>name`, `<prefix>personality.3`, …"""
    cleaned_name = fields.text(problems, f"{prefix}name", name, max_chars=PERSONA_NAME_MAX)
    if age is not None and not PERSONA_AGE_MIN <= age <= PERSONA_AGE_MAX:
        problems.add(f"{prefix}age", f"must be between {PERSONA_AGE_MIN} and {PERSONA_AGE_MAX}")
    traits: list[str] = []
    if personality is not None:
        if len(personality) > PERSONALITY_MAX_ITEMS:
            problems.add(
                f"{prefix}personality", f"must list at most {PERSONALITY_MAX_ITEMS} traits"
            )
        for index, trait in enumerate(personality):
            field = f"{prefix}personality.{index}"
            cleaned = fields.text(problems, field, trait, max_chars=TRAIT_MAX, required=True)
            if cleaned:
                traits.append(cleaned)
    cleaned_background = fields.text(
        problems, f"{prefix}background", background, max_chars=PERSONA_BACKGROUND_MAX
    )
    return Persona(cleaned_name, age, tuple(traits), cleaned_background)


def check_attributes(
    problems: Problems, values: Mapping[str, str | None], *, prefix: str = ""
) -> Attributes:
    """The attributes cleaned: gender and age_range from their lists, the rest free text of
    at most 50 characters; problems named `<prefix><attribute>`."""
    gender = fields.choice(problems, f"{prefix}gender", values.get("gender"), GENDERS)
    age_range = fields.choice(problems, f"{prefix}age_range", values.get("age_range"), AGE_RANGES)
    free = {
        name: fields.text(problems, f"{prefix}{name}", values.get(name), max_chars=ATTRIBUTE_MAX)
        for name in FREE_ATTRIBUTES
    }
    return Attributes(gender=gender, age_range=age_range, **free)


def check_prompt(problems: Problems, field: str, prompt: str | None) -> str | None:
    """The user's prompt: required, 10–2000 characters after collapsing whitespace."""
    return fields.text(
        problems, field, prompt, min_chars=PROMPT_MIN, max_chars=PROMPT_MAX, required=True
    )


_NOUNS: Final = {"male": "man", "female": "woman", "unisex": "androgynous person"}


def _with_noun(value: str | None, noun: str) -> str | None:
    """`value noun` ("slim build"), unless `value` already ends with the noun."""
    if not value:
        return None
    if value.casefold().split()[-1] == noun:
        return value
    return f"{value} {noun}"


def _hair(style: str | None, color: str | None) -> str | None:
    """ "black hair, long ponytail"; a style alone reads "long wavy hair"."""
    if color:
        return ", ".join(filter(None, (_with_noun(color, "hair"), style)))
    return _with_noun(style, "hair")


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _lead(persona: Persona) -> str:
    who = persona.name or "a person"
    if persona.age is not None:
        who += f", {persona.age} years old"
    return f"Portrait of {who}."


def _appearance(attributes: Attributes) -> str | None:
    noun = _NOUNS.get(attributes.gender or "", "person")
    figure = (
        " ".join(filter(None, (attributes.age_range, noun)))
        if attributes.gender or attributes.age_range
        else None
    )
    parts = [
        figure,
        attributes.ethnicity,
        _with_noun(attributes.body_type, "build"),
        _hair(attributes.hair_style, attributes.hair_color),
        _with_noun(attributes.eye_color, "eyes"),
        _with_noun(attributes.skin_tone, "skin"),
    ]
    present = [p for p in parts if p]
    sentences = [f"Appearance: {', '.join(present)}."] if present else []
    if attributes.style:
        sentences.append(_sentence(f"Style: {attributes.style}"))
    return " ".join(sentences) or None


def build_prompt(persona: Persona, attributes: Attributes, prompt: str) -> str:
    """The provider prompt: who (name, age), personality, background, appearance, then the
    user's prompt. Deterministic; at most PROVIDER_PROMPT_MAX characters, keeping the user's
    prompt whole and shortening the description before it at a word boundary."""
    context = [_lead(persona)]
    if persona.personality:
        context.append(_sentence(f"Personality: {', '.join(persona.personality)}"))
    if persona.background:
        context.append(_sentence(persona.background))
    appearance = _appearance(attributes)
    if appearance:
        context.append(appearance)
    lead = " ".join(context)
    request = _sentence(fields.clean(prompt))
    budget = PROVIDER_PROMPT_MAX - len(request) - 1
    if len(lead) > budget:
        lead = lead[: max(budget - 1, 0)].rsplit(" ", 1)[0].rstrip(",.;: ") + "…"
    return f"{lead} {request}"
