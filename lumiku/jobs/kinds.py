"""The job contract (SPEC §17): what a kind of job is, what its handler gets and returns.

`jobs` owns it and knows no app: an app declares its `JobKind`s, the apps package gathers
every app's kinds into one `JobKinds` and the supervisor hands that to the workers through
`Deps.kinds`. A handler receives a `JobContext` and returns an `Outcome`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

if TYPE_CHECKING:
    from uuid import UUID

    from lumiku.deps import Deps

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


class JobKinds:
    """The job kinds this process runs, by name; filled at start-up, read-only afterwards."""

    def __init__(self, kinds: Iterable[JobKind] = ()) -> None:
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.add(kind)

    def add(self, kind: JobKind) -> None:
        """Add `kind`; refuses a name already taken."""
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is registered already")
        self._kinds[kind.name] = kind

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def kind(self, name: str) -> JobKind:
        """The definition of job kind `name`; KeyError when unknown."""
        return self._kinds[name]

    def all(self) -> tuple[JobKind, ...]:
        return tuple(self._kinds.values())
