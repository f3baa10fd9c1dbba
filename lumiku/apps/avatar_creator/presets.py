"""The bundled avatar presets (SPEC §8.1): five categories, read once and checked.

`data/presets.json` holds the categories (exactly `CATEGORIES`, in display order) and the
presets, each with a persona, attributes and a prompt that must pass the same rules as a
`POST …/avatars/generate` body. Loading refuses broken data with a ValueError naming every
problem, so a bad edit fails the first test rather than a request.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any, Final

import attrs
import cattrs

from lumiku.apps import fields
from lumiku.apps.avatar_creator import persona as rules
from lumiku.apps.fields import Problems
from lumiku.convert import converter
from lumiku.errors import NotFound

CATEGORIES: Final = ("professional", "casual", "sports", "fashion", "traditional")
DESCRIPTION_MAX: Final = 300
_SLUG: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@attrs.frozen
class Preset:
    id: str
    name: str
    category: str
    description: str
    # cattrs resolves these annotations at run time: spelled through the imported module.
    persona: rules.Persona
    attributes: rules.Attributes
    prompt: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "persona": self.persona.as_dict(),
            "attributes": self.attributes.as_dict(),
            "prompt": self.prompt,
        }


@attrs.frozen
class _PresetsDoc:
    categories: tuple[str, ...]
    presets: tuple[Preset, ...]


def _problems(preset: Preset) -> list[str]:
    """Every rule of a generate body that `preset` breaks, and its own (id, name, category)."""
    problems = Problems()
    if not _SLUG.match(preset.id):
        problems.add("id", "is not a slug")
    if preset.category not in CATEGORIES:
        problems.add("category", f"must be one of {', '.join(CATEGORIES)}")
    fields.text(problems, "name", preset.name, max_chars=fields.NAME_MAX, required=True)
    fields.text(
        problems, "description", preset.description, max_chars=DESCRIPTION_MAX, required=True
    )
    p = preset.persona
    rules.check_persona(
        problems,
        name=p.name,
        age=p.age,
        personality=p.personality,
        background=p.background,
        prefix="persona.",
    )
    rules.check_attributes(problems, preset.attributes.as_dict(), prefix="attributes.")
    rules.check_prompt(problems, "prompt", preset.prompt)
    return [f"preset {preset.id!r}: {e.field} {e.message}" for e in problems.errors]


class Presets:
    """The presets by id, in file order; checked when built."""

    def __init__(self, categories: tuple[str, ...], presets: tuple[Preset, ...]) -> None:
        problems = []
        if categories != CATEGORIES:
            problems.append(f"categories must be exactly {', '.join(CATEGORIES)}")
        self.by_id: dict[str, Preset] = {}
        for preset in presets:
            if preset.id in self.by_id:
                problems.append(f"preset id {preset.id!r} is repeated")
            problems += _problems(preset)
            self.by_id[preset.id] = preset
        if problems:
            raise ValueError("the avatar presets are broken: " + "; ".join(problems))

    def list(self, category: str | None = None) -> tuple[Preset, ...]:
        """Every preset, or those of `category` (ValidationFailed naming `category` when it
        is not one of CATEGORIES)."""
        if category is None:
            return tuple(self.by_id.values())
        problems = Problems()
        fields.choice(problems, "category", category, CATEGORIES)
        problems.raise_if_any()
        return tuple(p for p in self.by_id.values() if p.category == category)

    def find(self, preset_id: str) -> Preset | None:
        return self.by_id.get(preset_id)

    def get(self, preset_id: str) -> Preset:
        """The preset with `preset_id`; NotFound otherwise."""
        preset = self.by_id.get(preset_id)
        if preset is None:
            raise NotFound("No such preset.")
        return preset


def parse(doc: Any) -> Presets:
    """Presets from the JSON document; ValueError naming every problem."""
    try:
        parsed = converter.structure(doc, _PresetsDoc)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        details = "; ".join(cattrs.transform_error(exc))
        raise ValueError(f"presets.json is malformed: {details}") from None
    return Presets(parsed.categories, parsed.presets)


@functools.cache
def bundled() -> Presets:
    """The presets shipped in `data/presets.json`, read and checked once."""
    resource = importlib.resources.files("lumiku.apps.avatar_creator").joinpath("data/presets.json")
    return parse(json.loads(resource.read_text(encoding="utf-8")))


def list_presets(category: str | None = None) -> tuple[Preset, ...]:
    """`GET /presets?category=`: the bundled presets, optionally of one category."""
    return bundled().list(category)


def get(preset_id: str) -> Preset:
    """`GET /presets/{id}`: the bundled preset; NotFound otherwise."""
    return bundled().get(preset_id)


def find(preset_id: str) -> Preset | None:
    return bundled().find(preset_id)
