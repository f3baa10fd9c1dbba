from __future__ import annotations

import json
from typing import Any

import pytest

from lumiku.apps.avatar_creator import requests as rq
from lumiku.apps.avatar_creator.persona import (
    PROVIDER_PROMPT_MAX,
    Attributes,
    Persona,
    build_prompt,
)
from lumiku.errors import ValidationFailed

PROMPT = "smiling in a sunny classroom, soft morning light"


def body(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "Maya", "prompt": PROMPT}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def failing_fields(validate: Any, data: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as exc:
        validate(data)
    names = [e.field for e in exc.value.errors]
    assert len(names) == len(set(names)), "one error per field"
    return names


# Generate ------------------------------------------------------------------------------------


def test_a_minimal_generate_request_takes_the_defaults() -> None:
    generation = rq.validate_generate(body())
    assert generation.name == "Maya"
    assert (generation.width, generation.height, generation.seed) == (1024, 1024, None)
    assert generation.persona == Persona()
    assert generation.attributes == Attributes()
    assert generation.source_type == "text_to_image"
    assert generation.cost == rq.COST_GENERATE == 10


def test_a_full_generate_request_is_cleaned() -> None:
    generation = rq.validate_generate(
        body(
            name="  Maya   the\tteacher ",
            persona_name="Maya",
            persona_age=28,
            persona_personality=[" warm ", "curious"],
            persona_background="Teaches at a primary school in Bandung.",
            gender="female",
            age_range="adult",
            ethnicity="Sundanese",
            body_type="slim",
            hair_style="long wavy",
            hair_color="black",
            eye_color="brown",
            skin_tone="warm tan",
            style="smart casual",
            width=512,
            height=2048,
            seed=2**31 - 1,
        )
    )
    assert generation.name == "Maya the teacher"
    assert generation.persona.personality == ("warm", "curious")
    assert (generation.width, generation.height, generation.seed) == (512, 2048, 2**31 - 1)
    payload = generation.as_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["provider_prompt"] == generation.provider_prompt


FREE = ("ethnicity", "body_type", "hair_style", "hair_color", "eye_color", "skin_tone", "style")
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", body(name=...), "name"),
    ("name blank", body(name="   "), "name"),
    ("name too long", body(name="n" * 101), "name"),
    ("prompt missing", body(prompt=...), "prompt"),
    ("prompt too short", body(prompt="a portrait"[:9]), "prompt"),
    ("prompt too long", body(prompt="p" * 2001), "prompt"),
    ("prompt not text", body(prompt=42), "prompt"),
    ("persona name too long", body(persona_name="n" * 101), "persona_name"),
    ("age 0", body(persona_age=0), "persona_age"),
    ("age 121", body(persona_age=121), "persona_age"),
    ("age as text", body(persona_age="30"), "persona_age"),
    ("age as bool", body(persona_age=True), "persona_age"),
    ("eleven traits", body(persona_personality=["t"] * 11), "persona_personality"),
    ("long trait", body(persona_personality=["ok", "t" * 51]), "persona_personality.1"),
    ("trait not text", body(persona_personality=["ok", 3]), "persona_personality.1"),
    ("blank trait", body(persona_personality=["ok", "  "]), "persona_personality.1"),
    ("traits a string", body(persona_personality="warm"), "persona_personality"),
    ("traits an object", body(persona_personality={"warm": 1}), "persona_personality"),
    ("long background", body(persona_background="b" * 501), "persona_background"),
    ("gender", body(gender="other"), "gender"),
    ("age range", body(age_range="old"), "age_range"),
    *[(f"{name} too long", body(**{name: "x" * 51}), name) for name in FREE],
    ("width small", body(width=511), "width"),
    ("width large", body(width=2049), "width"),
    ("height large", body(height=4096), "height"),
    ("height fractional", body(height=1024.5), "height"),
    ("seed negative", body(seed=-1), "seed"),
    ("seed too big", body(seed=2**31), "seed"),
    ("unknown field", body(credit_cost=0), "credit_cost"),
]


@pytest.mark.parametrize(("data", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_its_field(data: dict[str, Any], field: str) -> None:
    assert field in failing_fields(rq.validate_generate, data)


def test_every_problem_is_reported_at_once() -> None:
    data = body(name="", prompt="short", persona_age=500, gender="x", width=1, seed=-5)
    assert sorted(failing_fields(rq.validate_generate, data)) == [
        "gender",
        "name",
        "persona_age",
        "prompt",
        "seed",
        "width",
    ]


# From preset -----------------------------------------------------------------------------------


def test_from_preset() -> None:
    generation = rq.validate_from_preset({"preset_id": "javanese-bride"})
    assert generation.name == "Javanese Bride"
    assert generation.source_type == "from_preset"
    assert generation.preset_id == "javanese-bride"
    assert generation.cost == rq.COST_FROM_PRESET == 8
    assert "kebaya" in generation.provider_prompt
    named = rq.validate_from_preset({"preset_id": "javanese-bride", "custom_name": " Ayu "})
    assert named.name == "Ayu"
    for data, field in [
        ({}, "preset_id"),
        ({"preset_id": "unicorn"}, "preset_id"),
        ({"preset_id": "javanese-bride", "custom_name": "c" * 101}, "custom_name"),
        ({"preset_id": "javanese-bride", "prompt": "override"}, "prompt"),
    ]:
        assert failing_fields(rq.validate_from_preset, data) == [field]


# Projects and updates ---------------------------------------------------------------------------


def test_projects() -> None:
    assert rq.validate_project_create({"name": " Team \n photos "}) == rq.Project(
        "Team photos", None
    )
    assert rq.validate_project_create({"name": "x", "description": "  "}).description is None
    for data, field in [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "ok", "description": "d" * 501}, "description"),
        ({"name": "ok", "owner": "me"}, "owner"),
    ]:
        assert failing_fields(rq.validate_project_create, data) == [field]
    assert rq.validate_project_update({}) == {}
    assert rq.validate_project_update({"description": None}) == {"description": None}
    assert rq.validate_project_update({"name": " New "}) == {"name": "New"}
    assert failing_fields(rq.validate_project_update, {"name": None}) == ["name"]


def test_avatar_updates_change_only_what_is_sent() -> None:
    assert rq.validate_avatar_update({}) == {}
    assert rq.validate_avatar_update({"name": " Maya  K "}) == {"name": "Maya K"}
    assert rq.validate_avatar_update({"persona_age": None, "gender": "female"}) == {
        "persona_age": None,
        "gender": "female",
    }
    assert rq.validate_avatar_update({"persona_personality": ["kind", " bold "]}) == {
        "persona_personality": ("kind", "bold")
    }
    assert rq.validate_avatar_update({"persona_personality": None}) == {"persona_personality": ()}
    for data, field in [
        ({"name": None}, "name"),
        ({"persona_age": 0}, "persona_age"),
        ({"hair_color": "h" * 51}, "hair_color"),
        ({"prompt": "new prompt text"}, "prompt"),
    ]:
        assert failing_fields(rq.validate_avatar_update, data) == [field]


def test_upload_form_fields() -> None:
    fields = rq.validate_upload_fields(
        {"name": "Me", "persona_age": "30", "persona_personality": "warm, kind,", "gender": "male"}
    )
    assert fields.name == "Me"
    assert fields.persona.age == 30
    assert fields.persona.personality == ("warm", "kind")
    assert fields.attributes.gender == "male"
    for form, field in [
        ({}, "name"),
        ({"name": "Me", "persona_age": "thirty"}, "persona_age"),
        ({"name": "Me", "persona_age": "-3"}, "persona_age"),
        ({"name": "Me", "persona_age": "130"}, "persona_age"),
        ({"name": "Me", "age_range": "ancient"}, "age_range"),
        ({"name": "Me", "image_url": "http://x"}, "image_url"),
    ]:
        assert failing_fields(rq.validate_upload_fields, form) == [field]


# The provider prompt ---------------------------------------------------------------------------


def test_the_prompt_reads_like_a_description() -> None:
    persona = Persona("Maya", 28, ("warm", "curious"), "Teaches at a primary school in Bandung")
    attributes = Attributes(
        gender="female",
        age_range="adult",
        ethnicity="Sundanese",
        body_type="slim",
        hair_style="long wavy",
        hair_color="black",
        eye_color="brown",
        skin_tone="warm tan",
        style="smart casual",
    )
    assert build_prompt(persona, attributes, f"  {PROMPT}\n") == (
        "Portrait of Maya, 28 years old. Personality: warm, curious. Teaches at a primary "
        "school in Bandung. Appearance: adult woman, Sundanese, slim build, black hair, long "
        "wavy, brown eyes, warm tan skin. Style: smart casual. "
        "smiling in a sunny classroom, soft morning light."
    )


def test_the_prompt_without_persona_or_attributes() -> None:
    assert build_prompt(Persona(), Attributes(), "a person in a park") == (
        "Portrait of a person. a person in a park."
    )
    assert build_prompt(Persona(age=40), Attributes(age_range="mature"), "in a park!") == (
        "Portrait of a person, 40 years old. Appearance: mature person. in a park!"
    )


def test_the_prompt_does_not_repeat_nouns_the_user_wrote() -> None:
    attributes = Attributes(
        gender="unisex", hair_color="black hair", eye_color="green eyes", body_type="athletic build"
    )
    prompt = build_prompt(Persona(), attributes, "standing in the rain")
    assert "hair hair" not in prompt
    assert "eyes eyes" not in prompt
    assert "build build" not in prompt
    assert "androgynous person" in prompt
    assert (
        build_prompt(Persona(), Attributes(hair_style="curly"), "x" * 10).count("curly hair") == 1
    )


def test_the_prompt_is_deterministic_and_capped_keeping_the_request_whole() -> None:
    persona = Persona("N" * 100, 99, tuple(["t" * 50] * 10), "b " * 250)
    attributes = Attributes(**{name: "v" * 50 for name in FREE}, gender="male", age_range="young")
    request = "r" * 1990
    prompt = build_prompt(persona, attributes, request)
    assert prompt == build_prompt(persona, attributes, request)
    assert len(prompt) <= PROVIDER_PROMPT_MAX
    assert prompt.endswith(request + ".")
    assert prompt.startswith("Portrait of NNN")
    assert "…" in prompt


@pytest.mark.parametrize("bad", ["\ud800", "\x00", "\x1b", "\x7f", "\x9f"])
def test_bad_text_is_refused_even_when_it_did_not_come_through_json(bad: str) -> None:
    # JSON bodies are refused at the edge; forms and direct callers meet the same rule here.
    assert failing_fields(rq.validate_project_create, {"name": f"Team{bad}"}) == ["name"]
    assert failing_fields(rq.validate_generate, body(prompt=f"{PROMPT}{bad}")) == ["prompt"]
    form = {"name": "Me", "persona_personality": f"warm, ki{bad}nd"}
    assert failing_fields(rq.validate_upload_fields, form) == ["persona_personality.1"]


def test_newlines_and_tabs_in_text_are_collapsed_not_refused() -> None:
    project = rq.validate_project_create({"name": "Team\n\tBlue\r\n", "description": "a\nb"})
    assert (project.name, project.description) == ("Team Blue", "a b")


def test_an_upload_age_of_any_length_is_a_range_error_not_a_crash() -> None:
    for raw, age in [("0030", 30), ("0" * 5000 + "7", 7), ("9" * 5000, None), ("1000", None)]:
        form = {"name": "Me", "persona_age": raw}
        if age is not None:
            assert rq.validate_upload_fields(form).persona.age == age
        else:
            assert failing_fields(rq.validate_upload_fields, form) == ["persona_age"]
