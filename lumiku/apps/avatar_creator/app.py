"""The Avatar Creator app (SPEC §8.1) as the registry knows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lumiku.apps.avatar_creator import requests
from lumiku.apps.avatar_creator.handlers import generate_avatar
from lumiku.apps.avatar_creator.routes import make_blueprint
from lumiku.apps.avatar_creator.service import APP_ID, KIND_FROM_PRESET, KIND_GENERATE
from lumiku.apps.avatar_creator.works import AvatarWorks
from lumiku.apps.registry import App
from lumiku.http.ratelimit import AppRule
from lumiku.jobs.kinds import JobKind

if TYPE_CHECKING:
    from lumiku.deps import Deps

CONCURRENCY = 2
RATE_LIMITS = (
    AppRule(f"{APP_ID}.generate", "user", "5/1m"),
    AppRule(f"{APP_ID}.from_preset", "user", "8/1m"),
    AppRule(f"{APP_ID}.upload", "user", "10/1m"),
    AppRule(f"{APP_ID}.project_create", "user", "20/1h"),
)


def _provider_available(deps: Deps) -> bool:
    # While the avatar provider's breaker is open, generations wait in the queue.
    return deps.providers.available("avatar")


def make_app() -> App:
    """Avatar Creator: its routes, job kinds, costs, rate limits, dashboard card and works
    (one App per service)."""
    kinds = tuple(
        JobKind(name, generate_avatar, concurrency=CONCURRENCY, available=_provider_available)
        for name in (KIND_GENERATE, KIND_FROM_PRESET)
    )
    return App(
        APP_ID,
        "Avatar Creator",
        kinds=kinds,
        costs={
            "generate": requests.COST_GENERATE,
            "from_preset": requests.COST_FROM_PRESET,
            "upload": requests.COST_UPLOAD,
        },
        blueprint=make_blueprint(),
        rate_limits=RATE_LIMITS,
        description="Create AI avatars from a prompt, a preset or a photo.",
        icon="user-circle",
        color="blue",
        order=10,
        works=AvatarWorks(),
    )
