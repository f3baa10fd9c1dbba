"""A pose's keypoints in words, for text-to-image models that take no skeleton.

"standing, right arm raised, left arm down, facing the viewer": sides are the person's own
(COCO's r_* and l_*). Image y grows downwards; every threshold is a fraction of the torso
length (neck to mid-hip), so the words do not depend on the image size or the figure's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lumiku.providers.base import Keypoint

_NOSE, _NECK = 0, 1
_R_SHOULDER, _R_ELBOW, _R_WRIST = 2, 3, 4
_L_SHOULDER, _L_ELBOW, _L_WRIST = 5, 6, 7
_R_HIP, _R_KNEE, _R_ANKLE = 8, 9, 10
_L_HIP, _L_KNEE, _L_ANKLE = 11, 12, 13
_R_EAR, _L_EAR = 16, 17

Point = tuple[float, float]


def describe_pose(points: Sequence[Keypoint]) -> str:
    """The pose in a few comma-separated words (empty when too few keypoints are present)."""
    xy: list[Point | None] = [(p.x, p.y) if p.present else None for p in points]
    torso = _torso_length(xy)
    if torso is None:
        return ""
    parts = [_legs(xy, torso)]
    arms = {side: _arm(xy, side, torso) for side in ("right", "left")}
    if arms["right"] == arms["left"] and arms["right"]:
        parts.append(f"both arms {arms['right']}")
    else:
        parts.extend(f"{side} arm {state}" for side, state in arms.items() if state)
    parts.append(_lean(xy, torso))
    parts.append(_facing(xy))
    return ", ".join(part for part in parts if part)


def _mid(a: Point | None, b: Point | None) -> Point | None:
    if a is None or b is None:
        return a or b
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def _torso_length(xy: Sequence[Point | None]) -> float | None:
    neck, hip = xy[_NECK], _mid(xy[_R_HIP], xy[_L_HIP])
    if neck is None or hip is None:
        return None
    return max(math.dist(neck, hip), 1e-3)


def _arm(xy: Sequence[Point | None], side: str, torso: float) -> str:
    shoulder, elbow, wrist = (
        (xy[_R_SHOULDER], xy[_R_ELBOW], xy[_R_WRIST])
        if side == "right"
        else (xy[_L_SHOULDER], xy[_L_ELBOW], xy[_L_WRIST])
    )
    if shoulder is None or wrist is None:
        return ""
    rise = shoulder[1] - wrist[1]
    reach = abs(wrist[0] - shoulder[0])
    if rise > 0.25 * torso:
        return "raised"
    if abs(rise) <= 0.25 * torso and reach > 0.6 * torso:
        return "outstretched"
    if elbow is not None and math.dist(shoulder, wrist) < 0.55 * torso:
        return "bent"
    return "down"


def _legs(xy: Sequence[Point | None], torso: float) -> str:
    hips = (xy[_R_HIP], xy[_L_HIP])
    knees = (xy[_R_KNEE], xy[_L_KNEE])
    ankles = (xy[_R_ANKLE], xy[_L_ANKLE])
    thighs_flat = [
        abs(k[1] - h[1]) < 0.3 * torso
        for h, k in zip(hips, knees, strict=True)
        if h is not None and k is not None
    ]
    if thighs_flat and all(thighs_flat):
        return "sitting"
    if ankles[0] is not None and ankles[1] is not None:
        if abs(ankles[0][1] - ankles[1][1]) > 0.35 * torso:
            return "standing on one leg"
        if abs(ankles[0][0] - ankles[1][0]) > 0.8 * torso:
            return "standing with legs apart"
    return "standing"


def _lean(xy: Sequence[Point | None], torso: float) -> str:
    neck, hip = xy[_NECK], _mid(xy[_R_HIP], xy[_L_HIP])
    if neck is None or hip is None:
        return ""
    offset = neck[0] - hip[0]
    if abs(offset) < 0.25 * torso:
        return ""
    return "leaning to the image's " + ("right" if offset > 0 else "left")


def _facing(xy: Sequence[Point | None]) -> str:
    nose, r_ear, l_ear = xy[_NOSE], xy[_R_EAR], xy[_L_EAR]
    if nose is None and (r_ear is not None or l_ear is not None):
        return "facing away"
    ear = r_ear if l_ear is None else l_ear if r_ear is None else None
    if nose is not None and ear is not None:  # one ear only: a profile
        return "in profile, facing the image's " + ("left" if nose[0] < ear[0] else "right")
    if nose is not None:
        return "facing the viewer"
    return ""
