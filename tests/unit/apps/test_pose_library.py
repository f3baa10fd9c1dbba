from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import pytest

from lumiku.apps.pose_generator import library
from lumiku.apps.pose_generator.library import KEYPOINT_NAMES, Pose
from lumiku.errors import NotFound, ValidationFailed

LIB = library.bundled()
POSES = list(LIB.poses.values())
IDX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
ASPECT = 3 / 4  # the frame's width / height: distances are measured in frame heights


def point(pose: Pose, name: str) -> tuple[float, float]:
    x, y, _v = pose.keypoints[IDX[name]]
    return x * ASPECT, y


def mid(pose: Pose, a: str, b: str) -> tuple[float, float]:
    (ax, ay), (bx, by) = point(pose, a), point(pose, b)
    return (ax + bx) / 2, (ay + by) / 2


def fields(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.field for e in exc.value.errors]


# Data integrity ----------------------------------------------------------------------------


def test_the_bundle_is_big_enough() -> None:
    assert len(LIB.categories) >= 20
    assert len(LIB.poses) >= 40
    roots = [c for c in LIB.categories.values() if c.parent_id is None]
    assert len(roots) >= 5
    assert any(c.parent_id is not None for c in LIB.categories.values())


def test_every_leaf_category_has_poses_and_every_pose_a_known_category() -> None:
    parents = {c.parent_id for c in LIB.categories.values()}
    leaves = [c.id for c in LIB.categories.values() if c.id not in parents]
    used = {p.category_id for p in POSES}
    assert set(leaves) <= used
    assert used <= set(LIB.categories)


def test_poses_cover_every_difficulty_and_gender() -> None:
    assert {p.difficulty for p in POSES} == set(library.DIFFICULTIES)
    assert {p.gender_suitability for p in POSES} == set(library.GENDERS)
    assert any(p.featured for p in POSES)
    assert all(p.tags and all(t == t.strip() and t for t in p.tags) for p in POSES)


@pytest.mark.parametrize("pose", POSES, ids=lambda p: p.id)
def test_keypoints_are_coco18_in_range(pose: Pose) -> None:
    assert len(pose.keypoints) == 18
    for x, y, v in pose.keypoints:
        assert 0.0 <= x <= 1.0
        assert 0.0 <= y <= 1.0
        assert v in (0, 1, 2)
    assert pose.keypoints[IDX["neck"]][2] == 2


@pytest.mark.parametrize("pose", POSES, ids=lambda p: p.id)
def test_bones_have_human_proportions(pose: Pose) -> None:
    neck, hips = point(pose, "neck"), mid(pose, "r_hip", "l_hip")
    torso = math.dist(neck, hips)
    assert torso > 0.1, "the torso is a sizeable part of the frame"
    bones = [
        ("r_shoulder", "r_elbow"),
        ("r_elbow", "r_wrist"),
        ("l_shoulder", "l_elbow"),
        ("l_elbow", "l_wrist"),
        ("r_hip", "r_knee"),
        ("r_knee", "r_ankle"),
        ("l_hip", "l_knee"),
        ("l_knee", "l_ankle"),
    ]
    for a, b in bones:
        assert math.dist(point(pose, a), point(pose, b)) <= torso, f"{a}-{b} longer than torso"
    for side in ("r", "l"):
        shoulder = math.dist(point(pose, f"{side}_shoulder"), neck)
        assert shoulder <= 0.5 * torso, "shoulders hang off the neck"
    nose = point(pose, "nose")
    assert 0.15 * torso < math.dist(nose, neck) < 0.6 * torso
    for feature in ("r_eye", "l_eye", "r_ear", "l_ear"):
        assert math.dist(point(pose, feature), nose) < 0.4 * torso


@pytest.mark.parametrize("pose", POSES, ids=lambda p: p.id)
def test_a_face_seen_from_the_front_has_its_right_eye_on_the_image_left(pose: Pose) -> None:
    """OpenPose order: r_* are the figure's right, which faces the viewer's left."""
    if pose.keypoints[IDX["r_eye"]][2] == 2 and pose.keypoints[IDX["l_eye"]][2] == 2:
        assert point(pose, "r_eye")[0] < point(pose, "l_eye")[0]


STANDING = sorted(LIB.descendants("standing"))


@pytest.mark.parametrize(
    "pose", [p for p in POSES if p.category_id in STANDING], ids=lambda p: p.id
)
def test_standing_poses_stand_upright_facing_the_camera(pose: Pose) -> None:
    nose, neck = point(pose, "nose"), point(pose, "neck")
    hips = mid(pose, "r_hip", "l_hip")
    knees = mid(pose, "r_knee", "l_knee")
    ankles = mid(pose, "r_ankle", "l_ankle")
    assert nose[1] < neck[1] < hips[1] < knees[1] < ankles[1]
    assert point(pose, "r_shoulder")[0] < point(pose, "l_shoulder")[0]
    assert point(pose, "r_hip")[0] < point(pose, "l_hip")[0]
    assert ankles[1] - neck[1] > 0.5, "a standing figure fills most of the frame's height"


def test_poses_are_actually_different() -> None:
    """Every two poses put some joint at least 5% of the frame apart."""
    for a, b in itertools.combinations(POSES, 2):
        moved = max(
            math.dist(pa[:2], pb[:2]) for pa, pb in zip(a.keypoints, b.keypoints, strict=True)
        )
        assert moved > 0.05, f"{a.id} and {b.id} are the same pose"


def test_sitting_and_lying_poses_differ_from_standing_ones_where_expected() -> None:
    chair = LIB.get("chair-upright")
    stand = LIB.get("relaxed-stand")

    def thigh_height(pose: Pose) -> float:
        return mid(pose, "r_knee", "l_knee")[1] - mid(pose, "r_hip", "l_hip")[1]

    assert thigh_height(chair) < 0.5 * thigh_height(stand), "a seated thigh points at us"
    plank = LIB.get("forearm-plank")
    neck, ankles = point(plank, "neck"), mid(plank, "r_ankle", "l_ankle")
    assert abs(neck[0] - ankles[0]) > 3 * abs(neck[1] - ankles[1]), "a plank is horizontal"
    wave = LIB.get("waving-hello")
    assert point(wave, "l_wrist")[1] < point(wave, "nose")[1], "the waving hand is raised"


# Categories ---------------------------------------------------------------------------------


def test_categories_tree_nests_every_category_once() -> None:
    tree = library.categories_tree()
    seen: list[str] = []

    def walk(nodes: list[dict[str, Any]], parent: str | None) -> None:
        assert [n["sort"] for n in nodes] == sorted(n["sort"] for n in nodes)
        for node in nodes:
            assert node["parent_id"] == parent
            seen.append(node["id"])
            walk(node["children"], node["id"])

    walk(tree, None)
    assert sorted(seen) == sorted(LIB.categories)
    assert sum(node["pose_count"] for node in tree) == len(POSES)
    standing = next(n for n in tree if n["id"] == "standing")
    assert standing["pose_count"] == sum(c["pose_count"] for c in standing["children"])


# Search --------------------------------------------------------------------------------------


def walk_pages(**filters: Any) -> list[Pose]:
    found: list[Pose] = []
    cursor = None
    for _ in range(100):
        page = library.search(limit=7, cursor=cursor, **filters)
        assert len(page.poses) <= 7
        found += page.poses
        cursor = page.next_cursor
        if cursor is None:
            return found
        assert len(page.poses) == 7
    raise AssertionError("paging never ended")


def expected_order(poses: list[Pose]) -> list[str]:
    return [p.id for p in sorted(poses, key=lambda p: (not p.featured, p.name.casefold(), p.id))]


def ancestors(category_id: str) -> set[str]:
    found = set()
    current: str | None = category_id
    while current is not None:
        found.add(current)
        current = LIB.categories[current].parent_id
    return found


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda p: True),
        ({"category": "standing"}, lambda p: "standing" in ancestors(p.category_id)),
        ({"category": "yoga"}, lambda p: p.category_id == "yoga"),
        ({"gender": "female"}, lambda p: p.gender_suitability in ("female", "unisex")),
        ({"gender": "male"}, lambda p: p.gender_suitability in ("male", "unisex")),
        ({"gender": "unisex"}, lambda p: p.gender_suitability == "unisex"),
        ({"difficulty": "advanced"}, lambda p: p.difficulty == "advanced"),
        ({"featured": True}, lambda p: p.featured),
        ({"featured": False}, lambda p: not p.featured),
        (
            {"category": "sitting", "difficulty": "beginner"},
            lambda p: "sitting" in ancestors(p.category_id) and p.difficulty == "beginner",
        ),
    ],
)
def test_walking_every_page_returns_each_match_once_in_order(filters: Any, keep: Any) -> None:
    found = walk_pages(**filters)
    expected = [p for p in POSES if keep(p)]
    assert expected, "the filter matches something"
    assert [p.id for p in found] == expected_order(expected)


def test_featured_poses_come_first() -> None:
    page = library.search(limit=100)
    flags = [p.featured for p in page.poses]
    assert flags == sorted(flags, reverse=True)
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("YOGA tree", {"tree-pose"}),
        ("hip-hop", {"hip-hop-groove"}),
        ("Legong", {"legong-agem"}),
        ("indonesia", {"legong-agem", "javanese-sembah", "silat-stance"}),
        ("vrksasana", {"tree-pose"}),
        ("  ", None),  # blank: no filter
        ("zzzz-nothing", set()),
    ],
)
def test_search_matches_names_descriptions_and_tags(query: str, expected: set[str] | None) -> None:
    found = {p.id for p in walk_pages(search=query)}
    assert found == (set(LIB.poses) if expected is None else expected)


def test_search_matches_word_starts_not_inner_substrings() -> None:
    assert "shopping-bag" not in {p.id for p in walk_pages(search="hop")}
    assert "tree-pose" in {p.id for p in walk_pages(search="yog")}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # base64 of [1,2,3]: right shape, wrong types
        ({"category": "underwater"}, "category"),
        ({"difficulty": "expert"}, "difficulty"),
        ({"gender": "other"}, "gender"),
        ({"search": "x" * 101}, "search"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        library.search(**kwargs)
    assert fields(exc) == [field]


def test_query_string_parameters_are_parsed_and_reported_together() -> None:
    page = library.search_args({"limit": "3", "featured": "true", "category": "", "x": "1"})
    assert len(page.poses) == 3
    assert all(p.featured for p in page.poses)
    with pytest.raises(ValidationFailed) as exc:
        library.search_args({"limit": "ten", "featured": "maybe", "gender": "robot"})
    assert sorted(fields(exc)) == ["featured", "gender", "limit"]
    with pytest.raises(ValidationFailed) as exc:
        library.search_args({"limit": "500"})
    assert fields(exc) == ["limit"]


def test_a_cursor_survives_a_pose_disappearing() -> None:
    first = library.search(limit=5)
    assert first.next_cursor is not None
    last = first.poses[-1]
    smaller = library.Library(LIB.categories.values(), [p for p in POSES if p.id != last.id])
    rest = smaller.search(limit=100, cursor=first.next_cursor)
    assert [p.id for p in rest.poses] == [p.id for p in library.search(limit=100).poses[5:]]


def test_get_and_find() -> None:
    assert library.get("tree-pose").name == "Tree Pose"
    assert library.find("nope") is None
    with pytest.raises(NotFound):
        library.get("nope")
    as_json = library.get("tree-pose").as_dict()
    assert len(as_json["keypoints"]) == 18
    assert as_json["keypoints"][0] == list(library.get("tree-pose").keypoints[0])


# Loading refuses broken data ---------------------------------------------------------------


def documents() -> tuple[dict[str, Any], dict[str, Any]]:
    return copy.deepcopy(library._read("categories.json")), copy.deepcopy(
        library._read("library.json")
    )


def test_the_bundled_documents_parse() -> None:
    cats, poses = documents()
    assert len(library.parse(cats, poses).poses) == len(POSES)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda c, p: c["categories"].append(dict(c["categories"][0])), "repeated"),
        (lambda c, p: c["categories"][1].update(parent_id="nowhere"), "unknown parent"),
        (lambda c, p: c["categories"][0].update(parent_id="standing-casual"), "own ancestor"),
        (lambda c, p: p["poses"][0].update(category_id="nowhere"), "unknown category"),
        (lambda c, p: p["poses"].append(dict(p["poses"][0])), "repeated"),
        (lambda c, p: p["poses"][0]["keypoints"].pop(), "has 17 keypoints"),
        (lambda c, p: p["poses"][0]["keypoints"][3].__setitem__(0, 1.2), "out of range"),
        (lambda c, p: p["poses"][0]["keypoints"][3].__setitem__(2, 3), "out of range"),
        (lambda c, p: p["poses"][0].update(difficulty="easy"), "unknown difficulty"),
        (lambda c, p: p["poses"][0].update(colour="red"), "malformed"),
        (lambda c, p: p["keypoint_format"]["names"].reverse(), "COCO-18"),
    ],
)
def test_broken_data_is_refused(breakage: Any, message: str) -> None:
    cats, poses = documents()
    breakage(cats, poses)
    with pytest.raises(ValueError, match=message):
        library.parse(cats, poses)
