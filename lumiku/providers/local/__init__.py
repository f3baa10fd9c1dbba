"""The local provider: deterministic Pillow renderers inside the process (SPEC §9).

No network and no model: the same request and seed always give the same bytes, a different
seed a different picture. Every stage runs in a worker thread (`trio.to_thread`), and is
reported before it starts; cancellation takes effect between stages (a stage takes tens of
milliseconds at 1024 px).

```
avatar.py   the portrait            look.py     attributes → colours, shapes, outfit
outfits.py  the clothes
pose.py     figure + skeleton map   scene.py    procedural backgrounds from a prompt
palette.py  words → colours         canvas.py   drawing helpers
samples.py  `python -m lumiku.providers.local.samples OUT_DIR`
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

import trio

from lumiku.providers.base import (
    AvatarRequest,
    BackgroundRequest,
    PoseRequest,
    PoseResult,
    Report,
    no_report,
)
from lumiku.providers.compose import composite_background, encode_png
from lumiku.providers.local.avatar import AvatarPainter
from lumiku.providers.local.pose import FigurePainter, draw_skeleton, figure_colors, jittered
from lumiku.providers.local.scene import render_scene

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

T = TypeVar("T")

NAME: Final = "local"


async def _stage(report: Report, stage: str, fn: Callable[[], T]) -> T:
    await report(stage)
    return await trio.to_thread.run_sync(fn)


class LocalProvider:
    """The embedded renderers; stateless, so one instance serves every job."""

    @property
    def name(self) -> str:
        return NAME

    async def avatar(self, request: AvatarRequest, report: Report = no_report) -> bytes:
        """Stages: painting background, drawing body, drawing face, drawing hair, encoding."""

        def start() -> AvatarPainter:
            painter = AvatarPainter(request)
            painter.paint_background()
            return painter

        painter = await _stage(report, "painting background", start)
        await _stage(report, "drawing body", painter.draw_body)
        await _stage(report, "drawing face", painter.draw_face)
        await _stage(report, "drawing hair", painter.draw_hair)
        return await _stage(report, "encoding", painter.encode)

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        """Stages: preparing (the seed's keypoints, the subject's colours), drawing
        skeleton, drawing figure, encoding."""
        points = jittered(request)
        colors = await _stage(
            report, "preparing", lambda: figure_colors(request.subject, request.seed_value)
        )
        w, h = request.width, request.height
        skeleton = await _stage(report, "drawing skeleton", lambda: draw_skeleton(points, w, h))

        def paint() -> FigurePainter:
            painter = FigurePainter(points, colors, w, h)
            painter.paint()
            return painter

        painter = await _stage(report, "drawing figure", paint)
        figure, skeleton_png = await _stage(
            report, "encoding", lambda: (painter.encode(), encode_png(skeleton))
        )
        return PoseResult(figure=figure, skeleton=skeleton_png, keypoints=points)

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        """Stages: decoding subject, filling colour | fitting upload | painting scene,
        compositing, encoding."""

        async def paint_scene(size: tuple[int, int]) -> Image.Image:
            return await _stage(
                report,
                "painting scene",
                lambda: render_scene(request.prompt, size[0], size[1], request.seed_value),
            )

        return await composite_background(request, report, paint_scene)
