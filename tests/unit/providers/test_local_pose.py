"""The local posed figure and its OpenPose skeleton map."""

from __future__ import annotations

import io
import math

import attrs
import pytest
from PIL import Image, ImageDraw

from lumiku.providers.base import InvalidRequest, Keypoint, PoseRequest
from lumiku.providers.local import LocalProvider
from lumiku.providers.local.pose import (
    JITTER,
    LIMB_DIMMING,
    LIMBS,
    OPENPOSE_COLORS,
    STAGES,
    figure_colors,
    stick_width,
)

from .pixels import STANDING, at, near, png

REQUEST = PoseRequest(STANDING, prompt="waving", width=512, height=768, seed=9)


def limb_color(index: int) -> tuple[int, int, int]:
    r, g, b = OPENPOSE_COLORS[index]
    return int(r * LIMB_DIMMING), int(g * LIMB_DIMMING), int(b * LIMB_DIMMING)


async def test_the_skeleton_map_has_openpose_colours_on_limbs_and_joints() -> None:
    result = await LocalProvider().pose(REQUEST)
    skeleton = png(result.skeleton)
    assert skeleton.size == (512, 768)
    assert skeleton.mode == "RGB"
    w, h = skeleton.size
    xy = [(p.x * w, p.y * h) for p in result.keypoints]
    for limb, (a, b) in enumerate(LIMBS[:13]):  # body limbs and neck-nose: long enough
        middle = ((xy[a][0] + xy[b][0]) / 2, (xy[a][1] + xy[b][1]) / 2)
        assert at(skeleton, middle) == limb_color(limb), (limb, a, b)
    for index, point in enumerate(xy):
        assert at(skeleton, point) == OPENPOSE_COLORS[index], index
    assert at(skeleton, (3, 3)) == (0, 0, 0)
    assert at(skeleton, (w - 3, h / 2)) == (0, 0, 0)


async def test_absent_keypoints_and_their_limbs_are_not_drawn() -> None:
    points = list(STANDING)
    points[4] = (0.0, 0.0, 0)  # r_wrist absent
    result = await LocalProvider().pose(attrs.evolve(REQUEST, keypoints=points))
    skeleton = png(result.skeleton)
    w, h = skeleton.size
    elbow = result.keypoints[3]
    was_wrist = STANDING[4]
    middle = ((elbow.x + was_wrist[0]) / 2 * w, (elbow.y + was_wrist[1]) / 2 * h)
    assert at(skeleton, middle) == (0, 0, 0)
    assert at(skeleton, (was_wrist[0] * w, was_wrist[1] * h)) == (0, 0, 0)
    assert result.keypoints[4] == Keypoint(0.0, 0.0, 0)


def test_stick_width_follows_the_annotator_scaled() -> None:
    assert stick_width(512, 512) == 4
    assert stick_width(1024, 2048) == 8
    assert stick_width(512, 300) == 4


async def test_the_figure_is_on_a_transparent_canvas_with_limbs_on_the_keypoints() -> None:
    result = await LocalProvider().pose(REQUEST)
    figure = png(result.figure)
    assert figure.mode == "RGBA"
    assert figure.size == (512, 768)
    assert at(figure, (2, 2))[3] == 0
    assert at(figure, (509, 765))[3] == 0
    w, h = figure.size
    k = result.keypoints
    torso = ((k[2].x + k[11].x) / 2 * w, (k[2].y + k[11].y) / 2 * h)
    colors = figure_colors(None, REQUEST.seed_value)
    assert near(at(figure, torso), colors.top, 3)
    for a, b in ((9, 10), (12, 13)):  # shins, in trouser colours
        middle = ((k[a].x + k[b].x) / 2 * w, (k[a].y + k[b].y) / 2 * h)
        assert at(figure, middle)[3] == 255


async def test_same_seed_same_bytes_other_seed_moves_and_recolours() -> None:
    provider = LocalProvider()
    first = await provider.pose(REQUEST)
    again = await provider.pose(REQUEST)
    assert (first.figure, first.skeleton) == (again.figure, again.skeleton)
    other = await provider.pose(attrs.evolve(REQUEST, seed=10))
    assert other.figure != first.figure
    assert other.skeleton != first.skeleton
    for moved, asked in zip(other.keypoints, REQUEST.keypoints, strict=True):
        assert abs(moved.x - asked.x) <= JITTER + 1e-9
        assert abs(moved.y - asked.y) <= JITTER + 1e-9


def subject_png() -> bytes:
    """A green-shirted, brown-skinned figure on a white backdrop."""
    image = Image.new("RGB", (512, 512), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([150, 250, 360, 500], fill=(20, 160, 60))
    draw.ellipse([200, 80, 310, 220], fill=(190, 140, 100))
    draw.rectangle([205, 60, 305, 110], fill=(30, 24, 20))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def test_the_subject_tints_the_figure() -> None:
    colors = figure_colors(subject_png(), 1)
    assert near(colors.top, (20, 160, 60), 25)
    assert near(colors.skin, (190, 140, 100), 25)
    result = await LocalProvider().pose(attrs.evolve(REQUEST, subject=subject_png()))
    figure = png(result.figure)
    k, (w, h) = result.keypoints, figure.size
    torso = ((k[2].x + k[11].x) / 2 * w, (k[2].y + k[11].y) / 2 * h)
    assert near(at(figure, torso), (20, 160, 60), 25)


async def test_an_undecodable_subject_is_a_permanent_error() -> None:
    with pytest.raises(InvalidRequest, match="subject"):
        await LocalProvider().pose(attrs.evolve(REQUEST, subject=b"not an image"))


async def test_stages_are_reported_in_order() -> None:
    stages: list[str] = []

    async def report(stage: str) -> None:
        stages.append(stage)

    await LocalProvider().pose(REQUEST, report)
    assert stages == list(STAGES)


def test_keypoints_are_validated() -> None:
    with pytest.raises(InvalidRequest, match="18 keypoints"):
        PoseRequest(STANDING[:17])
    with pytest.raises(InvalidRequest, match=r"within 0\.\.1"):
        PoseRequest([(1.5, 0.5, 1), *STANDING[1:]])
    with pytest.raises(InvalidRequest, match="finite"):
        PoseRequest([(math.nan, 0.5, 1), *STANDING[1:]])
    absent_anywhere = PoseRequest([(-3.0, 9.0, 0), *STANDING[1:]])
    assert not absent_anywhere.keypoints[0].present
    as_dicts = PoseRequest([{"x": x, "y": y, "v": v} for x, y, v in STANDING])
    assert as_dicts.keypoints == REQUEST.keypoints
