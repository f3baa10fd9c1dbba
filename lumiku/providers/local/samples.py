"""Render a few samples of the local provider: `python -m lumiku.providers.local.samples OUT`.

Writes two contrasting avatars, a posed figure (tinted by the first avatar) with its
OpenPose skeleton map, and that figure composited on a generated beach-at-sunset scene.
`docs/samples/` holds the output of this script.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import trio

from lumiku.providers.base import (
    AvatarAttributes,
    AvatarRequest,
    BackgroundRequest,
    PoseRequest,
)
from lumiku.providers.local import LocalProvider

SIDE: Final = 1024
AVATARS: Final = {
    "avatar-1.png": AvatarAttributes(
        gender="female",
        age_range="young",
        hair_style="long wavy",
        hair_color="auburn",
        eye_color="green",
        skin_tone="fair",
        style="casual teal",
    ),
    "avatar-2.png": AvatarAttributes(
        gender="male",
        age_range="mature",
        body_type="athletic",
        hair_style="short",
        eye_color="brown",
        skin_tone="sawo matang",
        style="professional navy suit",
    ),
}
# COCO-18: a person waving with the left arm, stepping out with the right leg.
WAVING: Final = (
    (0.50, 0.15, 2),
    (0.50, 0.25, 2),
    (0.39, 0.26, 2),
    (0.33, 0.37, 2),
    (0.31, 0.48, 2),
    (0.61, 0.26, 2),
    (0.72, 0.19, 2),
    (0.76, 0.07, 2),
    (0.44, 0.53, 2),
    (0.39, 0.70, 2),
    (0.34, 0.88, 2),
    (0.56, 0.53, 2),
    (0.58, 0.71, 2),
    (0.59, 0.90, 2),
    (0.48, 0.13, 2),
    (0.52, 0.13, 2),
    (0.46, 0.14, 2),
    (0.54, 0.14, 2),
)


async def render_samples(out: Path) -> list[Path]:
    """Render the samples into `out` (created if missing); return the files written."""
    provider = LocalProvider()
    await trio.Path(out).mkdir(parents=True, exist_ok=True)
    written: dict[str, bytes] = {}
    for name, attributes in AVATARS.items():
        request = AvatarRequest("a portrait", attributes, SIDE, SIDE, seed=2026)
        written[name] = await provider.avatar(request)
    pose = await provider.pose(
        PoseRequest(WAVING, "waving hello", written["avatar-1.png"], SIDE, SIDE, seed=7)
    )
    written["pose-figure.png"] = pose.figure
    written["pose-skeleton.png"] = pose.skeleton
    written["pose-on-beach.png"] = await provider.background(
        BackgroundRequest(pose.figure, "ai_generate", prompt="a beach at sunset", seed=3)
    )
    paths = []
    for name, data in written.items():
        path = out / name
        await trio.Path(path).write_bytes(data)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lumiku.providers.local.samples OUT_DIR", file=sys.stderr)
        return 2
    for path in trio.run(render_samples, Path(args[0])):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
