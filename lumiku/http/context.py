"""What request handlers reach through the app: the `Deps` and the rate limiter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quart import current_app

if TYPE_CHECKING:
    from lumiku.deps import Deps

DEPS_KEY: Final = "lumiku.deps"


def current_deps() -> Deps:
    """The `Deps` of the app serving the current request or websocket."""
    deps: Deps = current_app.extensions[DEPS_KEY]
    return deps
