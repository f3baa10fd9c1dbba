"""Avatar Creator request bodies and their rules (SPEC §8.1); pure, no I/O.

Each `validate_*` takes the decoded JSON body, structures it with `fields.structure` (JSON
types, unknown fields refused, arrays must be arrays) and then applies every rule, raising
one ValidationFailed that names each wrong field once (list items as
`persona_personality.2`). Text is trimmed and its whitespace collapsed before it is
measured; optional text that is blank counts as absent. Updates are partial: only the
fields sent change, and `null` clears an optional field. Ownership of projects and avatars
is the service's to check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.apps import fields
from lumiku.apps.avatar_creator import persona as rules
from lumiku.apps.avatar_creator import presets
from lumiku.apps.avatar_creator.persona import Attributes, Persona, build_prompt
from lumiku.apps.fields import Problems, structure

if TYPE_CHECKING:
    from collections.abc import Mapping

# Credits (SPEC §8.1); the app's registry entry carries the same numbers.
COST_GENERATE: Final = 10
COST_FROM_PRESET: Final = 8
COST_UPLOAD: Final = 2

SIZE_MIN: Final = 512
SIZE_MAX: Final = 2048
SIZE_DEFAULT: Final = 1024
SEED_MAX: Final = 2**31 - 1
SOURCE_TYPES: Final = ("text_to_image", "from_preset", "upload")
_AGE_DIGITS_MAX: Final = len(str(rules.PERSONA_AGE_MAX))
_AGE_RANGE: Final = f"must be between {rules.PERSONA_AGE_MIN} and {rules.PERSONA_AGE_MAX}"

_PERSONA_FIELDS: Final = (
    "persona_name",
    "persona_age",
    "persona_personality",
    "persona_background",
)
_ATTRIBUTE_FIELDS: Final = ("gender", "age_range", *rules.FREE_ATTRIBUTES)


# Projects ---------------------------------------------------------------------------------


@attrs.frozen
class ProjectBody:
    """`POST /projects` and `PUT /projects/{id}` as sent."""

    name: str | None = None
    description: str | None = None


@attrs.frozen
class Project:
    name: str
    description: str | None


def validate_project_create(data: Any) -> Project:
    """A new project: name 1–100 characters, description at most 500."""
    body = structure(data, ProjectBody)
    problems = Problems()
    name = fields.text(problems, "name", body.name, max_chars=fields.NAME_MAX, required=True)
    description = fields.text(
        problems, "description", body.description, max_chars=fields.DESCRIPTION_MAX
    )
    problems.raise_if_any()
    assert name is not None
    return Project(name, description)


def validate_project_update(data: Any) -> dict[str, Any]:
    """The changes of `PUT /projects/{id}`: only the fields sent; the name cannot be cleared,
    the description can (null or blank)."""
    body = structure(data, ProjectBody)
    problems = Problems()
    changes = fields.project_changes(problems, data, body.name, body.description)
    problems.raise_if_any()
    return changes


# Avatars ----------------------------------------------------------------------------------


@attrs.frozen
class GenerateBody:
    """`POST /projects/{id}/avatars/generate` as sent."""

    name: str | None = None
    prompt: str | None = None
    persona_name: str | None = None
    persona_age: int | None = None
    persona_personality: tuple[str, ...] | None = None
    persona_background: str | None = None
    gender: str | None = None
    age_range: str | None = None
    ethnicity: str | None = None
    body_type: str | None = None
    hair_style: str | None = None
    hair_color: str | None = None
    eye_color: str | None = None
    skin_tone: str | None = None
    style: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None


@attrs.frozen
class AvatarGeneration:
    """A validated avatar generation (from a prompt or a preset): the job's whole input."""

    name: str
    prompt: str
    persona: Persona
    attributes: Attributes
    width: int = SIZE_DEFAULT
    height: int = SIZE_DEFAULT
    seed: int | None = None
    source_type: str = "text_to_image"
    preset_id: str | None = None

    @property
    def cost(self) -> int:
        return COST_FROM_PRESET if self.source_type == "from_preset" else COST_GENERATE

    @property
    def provider_prompt(self) -> str:
        return build_prompt(self.persona, self.attributes, self.prompt)

    def as_payload(self) -> dict[str, Any]:
        """The job payload (JSON), with the provider prompt built once, here."""
        return {
            "name": self.name,
            "prompt": self.prompt,
            "provider_prompt": self.provider_prompt,
            "persona": self.persona.as_dict(),
            "attributes": self.attributes.as_dict(),
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "source_type": self.source_type,
            "preset_id": self.preset_id,
        }


def _persona(problems: Problems, body: Any) -> Persona:
    return rules.check_persona(
        problems,
        name=body.persona_name,
        age=body.persona_age,
        personality=body.persona_personality,
        background=body.persona_background,
    )


def _attributes(problems: Problems, body: Any) -> Attributes:
    return rules.check_attributes(
        problems, {name: getattr(body, name) for name in _ATTRIBUTE_FIELDS}
    )


def validate_generate(data: Any) -> AvatarGeneration:
    """`POST /projects/{id}/avatars/generate`'s body: name 1–100, prompt 10–2000, the
    persona and attributes (`persona.py`), width/height 512–2048 (default 1024), seed
    0…2**31−1 (optional)."""
    body = structure(data, GenerateBody)
    problems = Problems()
    name = fields.text(problems, "name", body.name, max_chars=fields.NAME_MAX, required=True)
    prompt = rules.check_prompt(problems, "prompt", body.prompt)
    persona = _persona(problems, body)
    attributes = _attributes(problems, body)
    width = fields.integer(
        problems, "width", body.width, low=SIZE_MIN, high=SIZE_MAX, default=SIZE_DEFAULT
    )
    height = fields.integer(
        problems, "height", body.height, low=SIZE_MIN, high=SIZE_MAX, default=SIZE_DEFAULT
    )
    if body.seed is not None and not 0 <= body.seed <= SEED_MAX:
        problems.add("seed", f"must be between 0 and {SEED_MAX}")
    problems.raise_if_any()
    assert name is not None
    assert prompt is not None
    return AvatarGeneration(name, prompt, persona, attributes, width, height, body.seed)


@attrs.frozen
class FromPresetBody:
    """`POST /projects/{id}/avatars/from-preset` as sent."""

    preset_id: str | None = None
    custom_name: str | None = None


def validate_from_preset(data: Any) -> AvatarGeneration:
    """`POST /projects/{id}/avatars/from-preset`'s body: a bundled preset's persona,
    attributes and prompt, named `custom_name` (≤ 100) or else after the preset."""
    body = structure(data, FromPresetBody)
    problems = Problems()
    preset = None
    if body.preset_id is None:
        problems.add("preset_id", "is required")
    else:
        preset = presets.find(body.preset_id)
        if preset is None:
            problems.add("preset_id", "is not a preset")
    custom_name = fields.text(problems, "custom_name", body.custom_name, max_chars=fields.NAME_MAX)
    problems.raise_if_any()
    assert preset is not None
    return AvatarGeneration(
        name=custom_name or preset.name,
        prompt=preset.prompt,
        persona=preset.persona,
        attributes=preset.attributes,
        source_type="from_preset",
        preset_id=preset.id,
    )


@attrs.frozen
class AvatarBody:
    """`PUT /avatars/{id}` as sent (a partial update)."""

    name: str | None = None
    persona_name: str | None = None
    persona_age: int | None = None
    persona_personality: tuple[str, ...] | None = None
    persona_background: str | None = None
    gender: str | None = None
    age_range: str | None = None
    ethnicity: str | None = None
    body_type: str | None = None
    hair_style: str | None = None
    hair_color: str | None = None
    eye_color: str | None = None
    skin_tone: str | None = None
    style: str | None = None


def validate_avatar_update(data: Any) -> dict[str, Any]:
    """The changes of `PUT /avatars/{id}`, keyed by the body's field names: only the fields
    sent; `name` cannot be cleared, every other field can (null), and
    `persona_personality` null means no traits (an empty tuple)."""
    body = structure(data, AvatarBody)
    problems = Problems()
    name = None
    if "name" in data:
        name = fields.text(problems, "name", body.name, max_chars=fields.NAME_MAX, required=True)
    persona = _persona(problems, body)
    attributes = _attributes(problems, body)
    problems.raise_if_any()
    cleaned: dict[str, Any] = {
        "name": name,
        "persona_name": persona.name,
        "persona_age": persona.age,
        "persona_personality": persona.personality,
        "persona_background": persona.background,
        **attributes.as_dict(),
    }
    return {key: value for key, value in cleaned.items() if key in data}


@attrs.frozen
class AvatarFields:
    """An uploaded avatar's own fields (the image itself is checked by storage, SPEC §10)."""

    name: str
    persona: Persona
    attributes: Attributes


def validate_upload_fields(form: Mapping[str, str]) -> AvatarFields:
    """The text fields of `POST /projects/{id}/avatars/upload` (multipart, so every value is
    a string): `name` required, the persona and attributes as in generate, `persona_age` as
    digits and `persona_personality` comma-separated. Unknown fields are refused."""
    problems = Problems()
    known = {"name", *_PERSONA_FIELDS, *_ATTRIBUTE_FIELDS}
    for key in form:
        if key not in known:
            problems.add(key, "unknown field")
    age = None
    raw_age = form.get("persona_age", "").strip()
    if raw_age:
        digits = raw_age.lstrip("0") or "0"
        if raw_age.isdigit() and raw_age.isascii() and len(digits) <= _AGE_DIGITS_MAX:
            age = int(digits)
        elif raw_age.isdigit() and raw_age.isascii():  # never converted: 10**5000 would fail
            problems.add("persona_age", _AGE_RANGE)
        else:
            problems.add("persona_age", "must be a whole number")
    raw_traits = form.get("persona_personality")
    traits = None if raw_traits is None else [t for t in raw_traits.split(",") if t.strip()]
    name = fields.text(problems, "name", form.get("name"), max_chars=fields.NAME_MAX, required=True)
    persona = rules.check_persona(
        problems,
        name=form.get("persona_name"),
        age=age,
        personality=traits,
        background=form.get("persona_background"),
    )
    attributes = rules.check_attributes(problems, {key: form.get(key) for key in _ATTRIBUTE_FIELDS})
    problems.raise_if_any()
    assert name is not None
    return AvatarFields(name, persona, attributes)
