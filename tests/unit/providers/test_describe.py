"""A pose in words, for text-to-image models."""

from __future__ import annotations

from lumiku.providers.base import PoseRequest
from lumiku.providers.describe import describe_pose

from .pixels import STANDING


def described(points: list[tuple[float, float, float]]) -> str:
    return describe_pose(PoseRequest(points).keypoints)


def moved(**changes: tuple[float, float, float]) -> list[tuple[float, float, float]]:
    names = ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow"]
    names += ["l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle"]
    names += ["r_eye", "l_eye", "r_ear", "l_ear"]
    points = list(STANDING)
    for name, value in changes.items():
        points[names.index(name)] = value
    return points


def test_standing_with_one_arm_raised_facing_the_viewer() -> None:
    text = described(STANDING)
    assert text.startswith("standing")
    assert "left arm raised" in text
    assert "right arm down" in text or "right arm outstretched" in text
    assert "facing the viewer" in text


def test_both_arms_raised() -> None:
    text = described(moved(r_elbow=(0.3, 0.16, 2), r_wrist=(0.2, 0.06, 2)))
    assert "both arms raised" in text


def test_arms_out_to_the_sides() -> None:
    text = described(moved(r_wrist=(0.05, 0.25, 2), l_wrist=(0.95, 0.26, 2)))
    assert "both arms outstretched" in text


def test_sitting_when_the_thighs_are_level() -> None:
    text = described(moved(r_knee=(0.30, 0.56, 2), l_knee=(0.70, 0.56, 2)))
    assert text.startswith("sitting")


def test_one_leg_lifted() -> None:
    assert described(moved(l_ankle=(0.64, 0.74, 2))).startswith("standing on one leg")


def test_profile_and_facing_away() -> None:
    profile = described(moved(l_ear=(0, 0, 0), l_eye=(0, 0, 0), nose=(0.45, 0.14, 2)))
    assert "in profile" in profile
    away = described(moved(nose=(0, 0, 0), r_eye=(0, 0, 0), l_eye=(0, 0, 0)))
    assert "facing away" in away


def test_nothing_to_say_without_a_torso() -> None:
    assert described(moved(neck=(0, 0, 0))) == ""
