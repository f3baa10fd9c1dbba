"""The apps registry (SPEC §8): what each app brings, declared once.

An app is a plugin: an id (`avatar-creator`), its routes (a blueprint mounted under
`/api/apps/<app-id>`), its job kinds (each with the handler that runs it, a per-instance
concurrency, a timeout and the attempts allowed), its server-side costs and the feature flag
that hides it. The HTTP layer mounts the blueprints, the workers get every app's job kinds
as one `jobs.kinds.JobKinds` (`job_kinds`, handed to them as `Deps.kinds`: `jobs` knows no
app), and `GET /api/apps` lists what the current user may use. Tests and benchmarks register
their own small app the same way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.jobs.kinds import JobKind, JobKinds

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from quart import Blueprint

    from lumiku.apps.works import Works
    from lumiku.http.ratelimit import AppRule

_APP_ID: Final = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


@attrs.frozen
class App:
    """An app as the registry knows it. The dashboard metadata (`description` … `pricing_url`)
    is what `GET /api/apps` lists, ordered by `order`; `works` is how My Work lists and
    deletes its generations (`apps/works.py`; None: the app makes none)."""

    id: str
    name: str
    kinds: tuple[JobKind, ...] = ()
    costs: Mapping[str, int] = attrs.field(factory=dict)
    blueprint: Blueprint | None = None
    flag: str = ""  # the feature flag that enables it; empty = the app id
    description: str = ""
    icon: str = ""
    color: str = ""
    order: int = 100
    beta: bool = False
    pricing_url: str | None = None
    works: Works | None = None
    # its rate-limit rules, each named "<app id>.<rule>" (SPEC §17)
    rate_limits: tuple[AppRule, ...] = ()

    def __attrs_post_init__(self) -> None:
        if not _APP_ID.match(self.id):
            raise ValueError(f"app id {self.id!r} must be lower-case letters, digits and dashes")
        if any(cost < 0 for cost in self.costs.values()):
            raise ValueError(f"app {self.id!r} has a negative cost")
        if self.blueprint is not None and self.blueprint.url_prefix != self.prefix:
            raise ValueError(f"app {self.id!r}: its blueprint must be mounted at {self.prefix}")
        for rule in self.rate_limits:
            if rule.app_id != self.id:
                raise ValueError(f"app {self.id!r}: rate-limit rule {rule.name!r} is not its own")

    @property
    def prefix(self) -> str:
        return f"/api/apps/{self.id}"

    def as_dict(self) -> dict[str, Any]:
        """The app as `GET /api/apps` lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "icon": self.icon,
            "color": self.color,
            "order": self.order,
            "beta": self.beta,
            "costs": dict(self.costs),
            "pricing_url": self.pricing_url,
        }


class Registry:
    """Every app of this process; filled at start-up, read-only afterwards."""

    def __init__(self, apps: Iterable[App] = ()) -> None:
        self._apps: dict[str, App] = {}
        self.job_kinds = JobKinds()  # every app's kinds, for the workers (`Deps.kinds`)
        for app in apps:
            self.register(app)

    def register(self, app: App) -> None:
        """Add `app`; refuses a second app with the same id or a job kind already taken."""
        if app.id in self._apps:
            raise ValueError(f"app {app.id!r} is registered already")
        JobKinds([*self.job_kinds.all(), *app.kinds])  # refuses a name taken, adds nothing
        self._apps[app.id] = app
        for kind in app.kinds:
            self.job_kinds.add(kind)

    def apps(self) -> tuple[App, ...]:
        return tuple(self._apps.values())

    def app(self, app_id: str) -> App:
        """The app with `app_id`; KeyError when there is none."""
        return self._apps[app_id]

    def blueprints(self) -> tuple[Blueprint, ...]:
        return tuple(app.blueprint for app in self._apps.values() if app.blueprint is not None)
