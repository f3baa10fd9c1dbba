"""`Providers`: which provider serves which operation, and whether it can right now.

Built once at start-up by `open_providers(settings)` (the supervisor holds it in `Deps`):
`providers.avatar|pose|background` settings name "local" (default) or "huggingface" per
operation. Apps call the operations on it; job workers ask `available(operation)` before
claiming a job that needs one (an open breaker leaves the job queued), and app health
endpoints report `health(operations)`. Every call is counted by provider, operation and
outcome in `requests` (read by the metrics endpoint when scraped).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from lumiku.errors import Permanent, ProviderUnavailable, RateLimitedUpstream, Transient
from lumiku.providers.base import (
    OPERATIONS,
    AvatarRequest,
    BackgroundRequest,
    PoseRequest,
    PoseResult,
    Provider,
    Report,
    no_report,
)
from lumiku.providers.huggingface import open_huggingface
from lumiku.providers.local import LocalProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

    import httpx

    from lumiku.config import Settings
    from lumiku.providers.breaker import Breaker, Observer

T = TypeVar("T")
LOCAL_BACKGROUND_MODES: Final = ("solid_color", "upload")  # never leave the process
# What a call ended with, for `requests` (most specific class first).
OUTCOMES: Final = (
    (ProviderUnavailable, "unavailable"),  # refused by the open breaker, never sent
    (RateLimitedUpstream, "rate_limited"),
    (Transient, "transient"),
    (Permanent, "permanent"),
)


def outcome_of(error: Exception) -> str:
    """The `requests` outcome label of a call that raised `error`."""
    for cls, label in OUTCOMES:
        if isinstance(error, cls):
            return label
    return "timeout" if isinstance(error, trio.TooSlowError) else "error"


class Providers:
    """The providers of this process, by operation. Read-only once built."""

    def __init__(
        self, serving: Mapping[str, Provider], breakers: Mapping[str, Breaker] | None = None
    ) -> None:
        missing = set(OPERATIONS) - set(serving)
        if missing:
            raise ValueError(f"no provider for {', '.join(sorted(missing))}")
        self._serving = dict(serving)
        self._breakers = dict(breakers or {})  # provider name → its breaker (HTTP only)
        # (provider, operation, outcome) → calls; outcome "success" or an `outcome_of` label
        self.requests: Counter[tuple[str, str, str]] = Counter()

    def provider(self, operation: str) -> Provider:
        """The provider serving `operation` ("avatar", "pose" or "background")."""
        return self._serving[operation]

    def name_for(self, operation: str) -> str:
        return self._serving[operation].name

    def breakers(self) -> Mapping[str, Breaker]:
        """Provider name → breaker, for the HTTP providers in use (metrics hook in here)."""
        return dict(self._breakers)

    def on_breaker_change(self, observer: Observer) -> None:
        """Call `observer` on every state change of every breaker (metrics, logs)."""
        for breaker in self._breakers.values():
            breaker.on_change(observer)

    def _breaker(self, operation: str, mode: str | None) -> Breaker | None:
        if operation == "background" and mode in LOCAL_BACKGROUND_MODES:
            return None
        return self._breakers.get(self.name_for(operation))

    def available(self, operation: str, *, mode: str | None = None) -> bool:
        """Whether a call for `operation` would go through now (cheap, no I/O). A worker
        asks before claiming; False means hold the job. `mode` is the background mode: the
        local modes (solid_color, upload) are always available."""
        breaker = self._breaker(operation, mode)
        return breaker is None or breaker.is_available()

    def retry_after_s(self, operation: str, *, mode: str | None = None) -> float:
        """How long to hold a job for `operation` that is not available (0 when it is)."""
        breaker = self._breaker(operation, mode)
        return 0.0 if breaker is None else breaker.retry_after_s()

    def health(self, operations: Iterable[str] = OPERATIONS) -> dict[str, Any]:
        """`{status: ok|degraded, operations: {op: provider}, providers: {name: {state,
        available[, retry_after_s]}}}` for the providers serving `operations`; degraded
        while any of their breakers is not closed."""
        operations = tuple(operations)
        names = dict.fromkeys(self.name_for(op) for op in operations)
        providers: dict[str, dict[str, Any]] = {}
        for name in names:
            breaker = self._breakers.get(name)
            if breaker is None:
                providers[name] = {"state": "closed", "available": True}
                continue
            entry: dict[str, Any] = {"state": breaker.state, "available": breaker.is_available()}
            if not entry["available"]:
                entry["retry_after_s"] = round(breaker.retry_after_s(), 1)
            providers[name] = entry
        degraded = any(entry["state"] != "closed" for entry in providers.values())
        return {
            "status": "degraded" if degraded else "ok",
            "operations": {op: self.name_for(op) for op in operations},
            "providers": providers,
        }

    async def avatar(self, request: AvatarRequest, report: Report = no_report) -> bytes:
        provider = self._serving["avatar"]
        return await self._counted(
            provider.name, "avatar", lambda: provider.avatar(request, report)
        )

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        provider = self._serving["pose"]
        return await self._counted(provider.name, "pose", lambda: provider.pose(request, report))

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        provider = self._serving["background"]
        return await self._counted(
            provider.name, "background", lambda: provider.background(request, report)
        )

    async def _counted(self, name: str, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, counting its outcome (a cancelled call counts for nothing)."""
        try:
            result = await call()
        except Exception as error:
            self.requests[name, operation, outcome_of(error)] += 1
            raise
        self.requests[name, operation, "success"] += 1
        return result


@contextlib.asynccontextmanager
async def open_providers(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Providers]:
    """The providers `settings.providers` names, with an httpx client (and a breaker) for
    each HTTP provider in use; the clients close on exit. `transport` replaces the network
    of the HTTP providers (tests)."""
    chosen = {op: getattr(settings.providers, op) for op in OPERATIONS}
    local = LocalProvider()
    async with contextlib.AsyncExitStack() as stack:
        serving: dict[str, Provider] = {}
        breakers: dict[str, Breaker] = {}
        if "huggingface" in chosen.values():
            huggingface = await stack.enter_async_context(
                open_huggingface(settings.huggingface, settings.providers, transport=transport)
            )
            breakers[huggingface.name] = huggingface.breaker
        for op, name in chosen.items():
            serving[op] = huggingface if name == "huggingface" else local
        yield Providers(serving, breakers)
