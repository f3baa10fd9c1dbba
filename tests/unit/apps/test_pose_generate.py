from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from lumiku.apps.pose_generator import requests as rq
from lumiku.errors import ValidationFailed

PROJECT = str(uuid.uuid4())
FILE = str(uuid.uuid4())


def gallery(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project_id": PROJECT,
        "generation_type": "gallery",
        "selected_pose_ids": ["relaxed-stand", "tree-pose", "sprint"],
        "batch_size": 2,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def text(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project_id": PROJECT,
        "generation_type": "text",
        "text_prompt": "standing on a beach at sunset",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def known(pose_id: str) -> bool:
    return pose_id != "no-such-pose"


def failing_fields(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as exc:
        rq.validate_generate(data, **kwargs)
    names = [e.field for e in exc.value.errors]
    assert len(names) == len(set(names)), "one error per field"
    return names


# Valid requests, cost, keys ------------------------------------------------------------------


def test_a_gallery_request_with_a_background() -> None:
    generation = rq.validate_generate(
        gallery(
            use_background_changer=True, background_mode="solid_color", background_color="#a1b2c3"
        )
    )
    assert generation.project_id == uuid.UUID(PROJECT)
    assert generation.total_poses == 6
    assert generation.cost == 6 * 40 == 240
    assert generation.background == rq.Background("solid_color", color="#A1B2C3")
    assert generation.output_formats == ("original",)
    assert generation.variation_keys() == (
        "relaxed-stand-v1",
        "relaxed-stand-v2",
        "tree-pose-v1",
        "tree-pose-v2",
        "sprint-v1",
        "sprint-v2",
    )
    payload = generation.as_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["variation_keys"] == list(generation.variation_keys())


def test_defaults() -> None:
    generation = rq.validate_generate(gallery(batch_size=...))
    assert generation.batch_size == rq.DEFAULT_BATCH_SIZE == 4
    assert generation.total_poses == 12
    assert generation.cost == 12 * 30
    generation = rq.validate_generate(text())
    assert generation.variation_count == rq.DEFAULT_VARIATIONS == 4
    assert generation.variation_keys() == ("text-v1", "text-v2", "text-v3", "text-v4")
    assert generation.cost == 120
    assert generation.background is None


def test_a_text_request_with_an_ai_background_and_formats() -> None:
    generation = rq.validate_generate(
        text(
            text_prompt="  jumping   for joy\n on a beach ",
            variation_count=20,
            use_background_changer=True,
            background_mode="ai_generate",
            background_prompt="tropical beach, golden hour",
            output_formats=["instagram_story", "shopee_product", "print_a4"],
        )
    )
    assert generation.text_prompt == "jumping for joy on a beach"
    assert generation.total_poses == 20
    assert generation.cost == 20 * 40
    assert generation.background == rq.Background(
        "ai_generate", prompt="tropical beach, golden hour"
    )
    assert generation.output_formats == ("instagram_story", "shopee_product", "print_a4")


def test_an_upload_background() -> None:
    generation = rq.validate_generate(
        gallery(use_background_changer=True, background_mode="upload", background_file_id=FILE)
    )
    assert generation.background == rq.Background("upload", file_id=uuid.UUID(FILE))


def test_the_largest_gallery_is_accepted() -> None:
    ids = [f"p{i}" for i in range(50)]
    generation = rq.validate_generate(
        gallery(selected_pose_ids=ids, batch_size=10), pose_exists=known
    )
    assert generation.total_poses == 500
    assert len(set(generation.variation_keys())) == 500


@pytest.mark.parametrize(
    ("total", "background", "credits"),
    [(1, False, 30), (1, True, 40), (6, True, 240), (500, False, 15000), (500, True, 20000)],
)
def test_cost(total: int, background: bool, credits: int) -> None:
    assert rq.cost(total, with_background=background) == credits


def test_the_estimate_grows_with_the_work() -> None:
    small = rq.validate_generate(gallery(selected_pose_ids=["tree-pose"], batch_size=1))
    big = rq.validate_generate(gallery(batch_size=10))
    background = rq.validate_generate(
        gallery(
            batch_size=10,
            use_background_changer=True,
            background_mode="solid_color",
            background_color="#000000",
        )
    )
    assert 0 < small.estimated_completion_s() < big.estimated_completion_s()
    assert big.estimated_completion_s() < background.estimated_completion_s()
    assert big.estimated_completion_s(pose_s=1.0) < big.estimated_completion_s()


# Every rule, one failing example each --------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("project missing", gallery(project_id=...), "project_id"),
    ("project not a uuid", gallery(project_id="p-1"), "project_id"),
    ("type missing", gallery(generation_type=...), "generation_type"),
    ("type unknown", gallery(generation_type="video"), "generation_type"),
    ("gallery without poses", gallery(selected_pose_ids=...), "selected_pose_ids"),
    ("gallery with no poses", gallery(selected_pose_ids=[]), "selected_pose_ids"),
    (
        "gallery with 201 poses",
        gallery(selected_pose_ids=[f"p{i}" for i in range(201)], batch_size=1),
        "selected_pose_ids",
    ),
    ("unknown pose", gallery(selected_pose_ids=["p1", "no-such-pose"]), "selected_pose_ids.1"),
    ("repeated pose", gallery(selected_pose_ids=["p1", "p2", "p1"]), "selected_pose_ids.2"),
    ("pose id not a string", gallery(selected_pose_ids=["p1", 7]), "selected_pose_ids.1"),
    ("poses a string", gallery(selected_pose_ids="tree-pose"), "selected_pose_ids"),
    ("formats a string", gallery(output_formats="original"), "output_formats"),
    ("batch 0", gallery(batch_size=0), "batch_size"),
    ("batch 11", gallery(batch_size=11), "batch_size"),
    ("batch as a string", gallery(batch_size="4"), "batch_size"),
    (
        "more than 500 poses",
        gallery(selected_pose_ids=[f"p{i}" for i in range(51)], batch_size=10),
        "batch_size",
    ),
    ("text prompt on gallery", gallery(text_prompt="a pose"), "text_prompt"),
    ("variations on gallery", gallery(variation_count=3), "variation_count"),
    ("text without prompt", text(text_prompt=...), "text_prompt"),
    ("prompt too short", text(text_prompt=" ab "), "text_prompt"),
    ("prompt too long", text(text_prompt="a" * 501), "text_prompt"),
    ("prompt blocked", text(text_prompt="Kill the dragon"), "text_prompt"),
    ("prompt control char", text(text_prompt="walking\x00 away"), "text_prompt"),
    ("variations 0", text(variation_count=0), "variation_count"),
    ("variations 21", text(variation_count=21), "variation_count"),
    ("poses on text", text(selected_pose_ids=["p1"]), "selected_pose_ids"),
    ("batch on text", text(batch_size=2), "batch_size"),
    ("changer as a string", gallery(use_background_changer="yes"), "use_background_changer"),
    ("changer without mode", gallery(use_background_changer=True), "background_mode"),
    (
        "unknown mode",
        gallery(use_background_changer=True, background_mode="blur"),
        "background_mode",
    ),
    (
        "ai without prompt",
        gallery(use_background_changer=True, background_mode="ai_generate"),
        "background_prompt",
    ),
    (
        "ai with blank prompt",
        gallery(use_background_changer=True, background_mode="ai_generate", background_prompt=" "),
        "background_prompt",
    ),
    (
        "ai prompt too long",
        gallery(
            use_background_changer=True, background_mode="ai_generate", background_prompt="b" * 301
        ),
        "background_prompt",
    ),
    (
        "ai prompt blocked",
        gallery(
            use_background_changer=True,
            background_mode="ai_generate",
            background_prompt="a room full of corpses",
        ),
        "background_prompt",
    ),
    (
        "solid without colour",
        gallery(use_background_changer=True, background_mode="solid_color"),
        "background_color",
    ),
    (
        "colour by name",
        gallery(use_background_changer=True, background_mode="solid_color", background_color="red"),
        "background_color",
    ),
    (
        "colour not hex",
        gallery(
            use_background_changer=True, background_mode="solid_color", background_color="#12345G"
        ),
        "background_color",
    ),
    (
        "upload without file",
        gallery(use_background_changer=True, background_mode="upload"),
        "background_file_id",
    ),
    (
        "upload file not a uuid",
        gallery(use_background_changer=True, background_mode="upload", background_file_id="f.png"),
        "background_file_id",
    ),
    (
        "prompt with solid colour",
        gallery(
            use_background_changer=True,
            background_mode="solid_color",
            background_color="#000000",
            background_prompt="beach",
        ),
        "background_prompt",
    ),
    ("mode without changer", gallery(background_mode="solid_color"), "background_mode"),
    ("colour without changer", gallery(background_color="#000000"), "background_color"),
    (
        "changer off with file",
        gallery(use_background_changer=False, background_file_id=FILE),
        "background_file_id",
    ),
    ("no formats", gallery(output_formats=[]), "output_formats"),
    ("unknown format", gallery(output_formats=["original", "gif"]), "output_formats.1"),
    ("repeated format", gallery(output_formats=["tiktok", "tiktok"]), "output_formats.1"),
    ("too many formats", gallery(output_formats=["original"] * 11), "output_formats"),
    ("unknown field", gallery(price=0), "price"),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_its_field(body: dict[str, Any], field: str) -> None:
    assert field in failing_fields(body, pose_exists=known)


def test_every_problem_is_reported_at_once() -> None:
    body = gallery(
        project_id="nope",
        batch_size=11,
        selected_pose_ids=["tree-pose", "no-such-pose"],
        text_prompt="kill",
        use_background_changer=True,
        background_mode="solid_color",
        background_color="blue",
        output_formats=["gif"],
    )
    assert sorted(failing_fields(body)) == [
        "background_color",
        "batch_size",
        "output_formats.0",
        "project_id",
        "selected_pose_ids.1",
        "text_prompt",
    ]


def test_wrong_types_and_unknown_fields_are_reported_together() -> None:
    fields = failing_fields(
        gallery(batch_size="many", colour="red", generation_type=3, output_formats="tiktok")
    )
    assert sorted(fields) == ["batch_size", "colour", "generation_type", "output_formats"]


def test_the_library_is_the_default_judge_of_pose_ids() -> None:
    assert failing_fields(gallery(selected_pose_ids=["tree-pose", "p1"])) == ["selected_pose_ids.1"]


def test_a_body_must_be_an_object() -> None:
    assert failing_fields(["gallery"]) == ["body"]


# Other bodies ---------------------------------------------------------------------------------


def test_background_change_body() -> None:
    assert rq.validate_background(
        {"background_mode": "solid_color", "background_color": "#ffffff"}
    ) == (rq.Background("solid_color", color="#FFFFFF"))
    with pytest.raises(ValidationFailed) as exc:
        rq.validate_background({})
    assert [e.field for e in exc.value.errors] == ["background_mode"]
    with pytest.raises(ValidationFailed) as exc:
        rq.validate_background({"background_mode": "ai_generate", "background_prompt": "nude"})
    assert [e.field for e in exc.value.errors] == ["background_prompt"]


def test_export_bodies_and_arguments() -> None:
    assert rq.validate_export({"format": "tiktok"}) == "tiktok"
    for bad in ({}, {"format": "gif"}, {"format": "tiktok", "size": 1}):
        with pytest.raises(ValidationFailed):
            rq.validate_export(bad)
    assert rq.export_formats_arg(None) is None
    assert rq.export_formats_arg("") is None
    assert rq.export_formats_arg("tiktok, original,tiktok") == ("tiktok", "original")
    with pytest.raises(ValidationFailed) as exc:
        rq.export_formats_arg("tiktok,gif")
    assert exc.value.errors[0].field == "formats"


def test_project_bodies() -> None:
    avatar = str(uuid.uuid4())
    project = rq.validate_project_create({"name": "  Summer   shoot ", "avatar_id": avatar})
    assert project == rq.Project("Summer shoot", None, uuid.UUID(avatar))
    assert rq.validate_project_create({"name": "Mine"}, has_image=True).avatar_id is None
    cases = [
        ({"name": "x"}, False, "avatar_id"),
        ({"name": "x", "avatar_id": avatar}, True, "avatar_id"),
        ({"name": "x", "avatar_id": "a-1"}, False, "avatar_id"),
        ({"name": "   ", "avatar_id": avatar}, False, "name"),
        ({"name": "n" * 101, "avatar_id": avatar}, False, "name"),
        ({"name": "x", "description": "d" * 501, "avatar_id": avatar}, False, "description"),
    ]
    for body, has_image, field in cases:
        with pytest.raises(ValidationFailed) as exc:
            rq.validate_project_create(body, has_image=has_image)
        assert [e.field for e in exc.value.errors] == [field], body
    assert rq.validate_project_update({"description": None}) == {"description": None}
    assert rq.validate_project_update({"name": " New "}) == {"name": "New"}
    with pytest.raises(ValidationFailed):
        rq.validate_project_update({"name": None})
