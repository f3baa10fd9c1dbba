"""The apps `lumiku serve` runs (SPEC §8): Avatar Creator and Pose Generator."""

from __future__ import annotations

from lumiku.apps.avatar_creator.app import make_app as avatar_creator_app
from lumiku.apps.pose_generator.app import make_app as pose_generator_app
from lumiku.apps.registry import Registry


def builtin_apps() -> Registry:
    """A registry of the built-in apps, each with fresh routes (one per service)."""
    return Registry([avatar_creator_app(), pose_generator_app()])
