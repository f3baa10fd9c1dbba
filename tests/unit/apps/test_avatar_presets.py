from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from lumiku.apps.avatar_creator import presets
from lumiku.apps.avatar_creator import requests as rq
from lumiku.apps.avatar_creator.persona import PROVIDER_PROMPT_MAX
from lumiku.errors import NotFound, ValidationFailed

ALL = presets.list_presets()


def test_five_categories_with_at_least_three_presets_each() -> None:
    assert presets.CATEGORIES == ("professional", "casual", "sports", "fashion", "traditional")
    assert {p.category for p in ALL} == set(presets.CATEGORIES)
    for category in presets.CATEGORIES:
        listed = presets.list_presets(category)
        assert len(listed) >= 3
        assert all(p.category == category for p in listed)
    assert sum(len(presets.list_presets(c)) for c in presets.CATEGORIES) == len(ALL)


def test_ids_are_unique_and_found() -> None:
    ids = [p.id for p in ALL]
    assert len(ids) == len(set(ids))
    for preset in ALL:
        assert presets.get(preset.id) is preset
    assert presets.find("nope") is None
    with pytest.raises(NotFound):
        presets.get("nope")


def test_an_unknown_category_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as exc:
        presets.list_presets("wizards")
    assert [e.field for e in exc.value.errors] == ["category"]


@pytest.mark.parametrize("preset", ALL, ids=lambda p: p.id)
def test_each_preset_is_a_valid_generate_request(preset: presets.Preset) -> None:
    """A preset could have been typed into the generate form: same rules, same prompt."""
    p, a = preset.persona, preset.attributes
    body = {
        "name": preset.name,
        "prompt": preset.prompt,
        "persona_name": p.name,
        "persona_age": p.age,
        "persona_personality": list(p.personality),
        "persona_background": p.background,
        **a.as_dict(),
    }
    generation = rq.validate_generate(body)
    assert generation.persona == p
    assert generation.attributes == a
    prompt = rq.validate_from_preset({"preset_id": preset.id}).provider_prompt
    assert prompt == generation.provider_prompt
    assert len(prompt) <= PROVIDER_PROMPT_MAX
    assert p.name is not None
    assert prompt.startswith(f"Portrait of {p.name}")
    assert prompt.endswith(preset.prompt)


def test_presets_serialise_to_json() -> None:
    as_json = presets.get("batik-artisan").as_dict()
    assert json.loads(json.dumps(as_json)) == as_json
    assert set(as_json) == {
        "id",
        "name",
        "category",
        "description",
        "persona",
        "attributes",
        "prompt",
    }
    assert set(as_json["persona"]) == {"name", "age", "personality", "background"}
    assert set(as_json["attributes"]) == {
        "gender",
        "age_range",
        "ethnicity",
        "body_type",
        "hair_style",
        "hair_color",
        "eye_color",
        "skin_tone",
        "style",
    }


def document() -> dict[str, Any]:
    resource = presets.importlib.resources.files("lumiku.apps.avatar_creator")
    return copy.deepcopy(json.loads(resource.joinpath("data/presets.json").read_text()))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d["categories"].append("anime"), "categories must be exactly"),
        (lambda d: d["presets"].append(dict(d["presets"][0])), "repeated"),
        (lambda d: d["presets"][0].update(category="anime"), "category must be one of"),
        (lambda d: d["presets"][0]["persona"].update(age=200), "persona.age"),
        (lambda d: d["presets"][0]["attributes"].update(gender="robot"), "attributes.gender"),
        (lambda d: d["presets"][0]["attributes"].update(style="s" * 51), "attributes.style"),
        (lambda d: d["presets"][0].update(prompt="short"), "prompt"),
        (lambda d: d["presets"][0].update(id="Not A Slug"), "not a slug"),
        (lambda d: d["presets"][0].update(price=8), "malformed"),
    ],
)
def test_broken_presets_are_refused(breakage: Any, message: str) -> None:
    doc = document()
    assert len(presets.parse(doc).by_id) == len(ALL)
    breakage(doc)
    with pytest.raises(ValueError, match=message):
        presets.parse(doc)
