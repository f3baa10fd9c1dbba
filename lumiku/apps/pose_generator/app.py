"""The Pose Generator's registry entry (SPEC §8.2): its routes, job kinds and costs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lumiku.apps.pose_generator import handlers, requests, routes
from lumiku.apps.pose_generator.service import APP_ID
from lumiku.apps.pose_generator.works import PoseWorks
from lumiku.apps.registry import App
from lumiku.http.ratelimit import AppRule
from lumiku.jobs.kinds import JobKind

GENERATE_TIMEOUT_S: Final = 3600.0
RATE_LIMITS: Final = (
    AppRule(f"{APP_ID}.generate", "user", "5/1m"),  # generations and background changes
    AppRule(f"{APP_ID}.upload", "user", "10/1m"),  # project images and backgrounds
    AppRule(f"{APP_ID}.project_create", "user", "20/1h"),
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from lumiku.deps import Deps


def make_app(
    renderers: Callable[[Deps], handlers.Renderers] = handlers.default_renderers,
) -> App:
    """The app; `renderers` picks the pose and background providers its jobs call (the
    service's by default; tests wrap them to count or fail calls)."""
    return App(
        id=APP_ID,
        name="Pose Generator",
        kinds=(
            JobKind(
                "pose.generate",
                handlers.bind(handlers.generate, renderers),
                concurrency=5,
                # a generation may be 500 poses of a few seconds each; an attempt cut short
                # resumes where it stopped, but a job that runs out of attempts is refunded
                timeout_s=GENERATE_TIMEOUT_S,
                available=lambda deps: deps.providers.available("pose"),
            ),
            JobKind(
                "pose.background",
                handlers.bind(handlers.change_background, renderers),
                concurrency=3,
            ),
        ),
        costs={"pose": requests.COST_PER_POSE, "background": requests.COST_BACKGROUND_CHANGE},
        blueprint=routes.blueprint,
        rate_limits=RATE_LIMITS,
        description="Pose your avatar in library poses or from a prompt, with backgrounds.",
        icon="person-standing",
        color="purple",
        order=20,
        works=PoseWorks(),
    )
