"""The apps registry (SPEC §8): what each app brings, declared once.

An app is a plugin: an id (`avatar-creator`), its routes (a blueprint mounted under
`/api/apps/<app-id>`), its job kinds (each with the handler that runs it, a per-instance
concurrency, a timeout and the attempts allowed), its server-side costs and the feature flag
that hides it. The HTTP layer mounts the blueprints, the workers look kinds up here, and
`GET /api/apps` lists what the current user may use. Tests and benchmarks register their own
small app the same way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

if TYPE_CHECKING:
    from uuid import UUID

    from quart import Blueprint

    from lumiku.deps import Deps
    from lumiku.http.ratelimit import AppRule

_APP_ID: Final = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_KIND: Final = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


class JobContext(Protocol):
    """What a handler gets from the worker running its job."""

    @property
    def job_id(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def attempt(self) -> int: ...

    @property
    def user_id(self) -> UUID:
        """Whose job it is (every row a handler writes belongs to them)."""

    @property
    def deps(self) -> Deps:
        """The service's resources: the store, storage, providers, settings."""

    async def progress(self, completed: int, total: int, stage: str) -> None:
        """Report progress; the worker stores it and publishes a `generation:progress` event."""

    def deliver(self, cost: int) -> None:
        """Record that work worth `cost` credits was delivered (what a cancellation keeps)."""


@attrs.frozen
class Outcome:
    """A handler's result: what it produced, and the cost of what it could not deliver
    (refunded when the job ends; a partial success still succeeds)."""

    result: Mapping[str, Any]
    undelivered_cost: int = 0


Handler = Callable[[JobContext], Awaitable[Outcome]]


@attrs.frozen
class JobKind:
    """A kind of job an app runs: `handler` raises errors.Transient / RateLimitedUpstream /
    Permanent to steer retries; trio cancellation means the job was cancelled or released.

    `available(deps)`, when given, is asked before every claim: while it answers False the
    kind's jobs are not claimed here — they wait in the queue, neither failed nor retried (e.g.
    while the circuit breaker of the provider they need is open)."""

    name: str
    handler: Handler
    concurrency: int = 2
    timeout_s: float = 300.0
    max_attempts: int = 3
    available: Callable[[Deps], bool] | None = None

    def __attrs_post_init__(self) -> None:
        if not _KIND.match(self.name):
            raise ValueError(f"job kind {self.name!r} must look like app.action")
        if self.concurrency < 1 or self.timeout_s <= 0 or self.max_attempts < 1:
            raise ValueError(
                f"job kind {self.name!r}: concurrency, timeout and attempts must be positive"
            )


@attrs.frozen
class App:
    id: str
    name: str
    kinds: tuple[JobKind, ...] = ()
    costs: Mapping[str, int] = attrs.field(factory=dict)
    blueprint: Blueprint | None = None
    flag: str = ""  # the feature flag that enables it; empty = the app id
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
        return {
            "id": self.id,
            "name": self.name,
            "costs": dict(self.costs),
            "kinds": [k.name for k in self.kinds],
        }


class Registry:
    """Every app of this process; filled at start-up, read-only afterwards."""

    def __init__(self, apps: Iterable[App] = ()) -> None:
        self._apps: dict[str, App] = {}
        self._kinds: dict[str, tuple[App, JobKind]] = {}
        for app in apps:
            self.register(app)

    def register(self, app: App) -> None:
        """Add `app`; refuses a second app with the same id or a job kind already taken."""
        if app.id in self._apps:
            raise ValueError(f"app {app.id!r} is registered already")
        for kind in app.kinds:
            if kind.name in self._kinds:
                raise ValueError(f"job kind {kind.name!r} is registered already")
        self._apps[app.id] = app
        for kind in app.kinds:
            self._kinds[kind.name] = (app, kind)

    def apps(self) -> tuple[App, ...]:
        return tuple(self._apps.values())

    def app(self, app_id: str) -> App:
        """The app with `app_id`; KeyError when there is none."""
        return self._apps[app_id]

    def kind(self, name: str) -> tuple[App, JobKind]:
        """The app and definition of job kind `name`; KeyError when unknown."""
        return self._kinds[name]

    def kinds(self) -> tuple[JobKind, ...]:
        return tuple(kind for _app, kind in self._kinds.values())

    def blueprints(self) -> tuple[Blueprint, ...]:
        return tuple(app.blueprint for app in self._apps.values() if app.blueprint is not None)
