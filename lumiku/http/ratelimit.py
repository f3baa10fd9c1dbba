"""Rate limits (SPEC §12): a fixed window per rule and client IP or user.

`RateLimiter.check(rule, identity)` counts one request and answers a `Decision`, or raises
`RateLimited` (429) when the window is full. When the counters' store is down or does not
answer within its bound (`redis.command_timeout_s`, see `counters.RedisCounters`), rules
listed in `ratelimit.fail_closed` raise `RateLimiterUnavailable` (503) and the others let
the request through: no request waits on, or slips past, a pending check. Both are logged
(`ratelimit.store_unavailable`, at most once a second per rule) and counted in
`statistics()`. Routes use the `rate_limited(rule)` decorator, which
finds the limiter in `current_app.extensions[LIMITER_KEY]` and adds the `RateLimit-*`
headers to the response, error responses included.

The core's rules are `RULE_SCOPES`, each a `ratelimit.<rule>` setting. An app declares its
own as `AppRule`s in its `App` value (SPEC §17), named `<app>.<rule>` so two apps never
share a bucket; `ratelimit.apps` overrides their defaults (`"<app>.<rule>=N/window"`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import types
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

import attrs
import trio
from quart import after_this_request, current_app, request

from lumiku.config_rules import APP_RULE, LEGACY_APP_RULES, parse_app_rate, parse_rate
from lumiku.errors import RateLimited, RateLimiterUnavailable, RedisUnavailable
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from quart.typing import ResponseTypes

    from lumiku.config import RateLimitSettings
    from lumiku.counters import Counters

log = get_logger(__name__)

LIMITER_KEY: Final = "lumiku.ratelimiter"
RULE_SCOPES: Final = {
    "login": "ip",
    "register": "ip",
    "profile_update": "user",
    "payment_create": "user",
    "payment_callback": "ip",
    "health": "ip",
    "health_detailed": "ip",
}
MAX_IDENTITY_CHARS: Final = 64
LOG_EVERY_S: Final = 1.0

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class AppRule:
    """A rule an app declares: `name` is `<app>.<rule>`, `rate` its default ("5/1m")."""

    name: str
    scope: str  # "ip" or "user"
    rate: str

    def __attrs_post_init__(self) -> None:
        if not APP_RULE.match(self.name) or self.scope not in ("ip", "user"):
            raise ValueError(f"rate-limit rule {self.name!r}: name <app>.<rule>, scope ip|user")
        parse_rate(self.rate)

    @property
    def app_id(self) -> str:
        return self.name.partition(".")[0]

    def rate_from(self, settings: RateLimitSettings) -> str:
        """The configured rate: `ratelimit.apps`, else the legacy setting of its name (the
        one shared setting of before per-app rules, applied to each app separately), else
        the declared default."""
        for entry in settings.apps:
            name, rate = parse_app_rate(entry)
            if name == self.name:
                return rate
        action = self.name.partition(".")[2]
        legacy: str = getattr(settings, action) if action in LEGACY_APP_RULES else ""
        return legacy or self.rate


@attrs.frozen
class Rule:
    """One limit: at most `limit` requests per `window_s` per identity of `scope`."""

    name: str
    scope: str  # "ip" or "user"
    limit: int
    window_s: int

    @classmethod
    def from_settings(cls, settings: RateLimitSettings, name: str) -> Rule:
        """The rule `name` as configured (`ratelimit.<name> = "5/15m"`)."""
        limit, window_s = parse_rate(getattr(settings, name))
        return cls(name, RULE_SCOPES[name], limit, window_s)

    def key(self, identity: str) -> str:
        """The counter key `rule:scope:identity`; long identities are hashed."""
        if len(identity) > MAX_IDENTITY_CHARS:
            identity = hashlib.sha256(identity.encode()).hexdigest()
        return f"{self.name}:{self.scope}:{identity}"


@attrs.frozen
class Decision:
    """A request let through. `counted` is False when nothing was counted (limiter
    disabled, or its store down on a fail-open rule): there are no headers to send then."""

    limit: int
    remaining: int
    reset_s: int
    counted: bool = True

    def headers(self) -> dict[str, str]:
        if not self.counted:
            return {}
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


@attrs.frozen
class RateLimitStatistics:
    """Totals since start: checks counted, rejected with 429, and store failures by mode."""

    checks: int
    rejected: int
    failed_open: int
    failed_closed: int
    rejected_by_rule: Mapping[str, int]


class RateLimiter:
    """Applies the configured rules (the core's and `app_rules`, the apps' declarations)
    with `counters` as the store; see the module docstring. Raises ValueError when the
    settings name a rule nobody declares."""

    def __init__(
        self, settings: RateLimitSettings, counters: Counters, app_rules: Iterable[AppRule] = ()
    ) -> None:
        self.enabled = settings.enabled
        self.rules = {name: Rule.from_settings(settings, name) for name in RULE_SCOPES}
        for declared in app_rules:
            if declared.name in self.rules:
                raise ValueError(f"rate-limit rule {declared.name!r} is declared twice")
            limit, window_s = parse_rate(declared.rate_from(settings))
            self.rules[declared.name] = Rule(declared.name, declared.scope, limit, window_s)
        unknown = set(settings.fail_closed) - self.rules.keys()
        if unknown:
            raise ValueError(f"ratelimit.fail_closed names unknown rules: {sorted(unknown)}")
        unknown = {parse_app_rate(entry)[0] for entry in settings.apps} - self.rules.keys()
        if unknown:
            raise ValueError(f"ratelimit.apps names unknown rules: {sorted(unknown)}")
        self.fail_closed = frozenset(settings.fail_closed)
        self._counters = counters
        self._counts = {"checks": 0, "rejected": 0, "failed_open": 0, "failed_closed": 0}
        self._rejected_by_rule = dict.fromkeys(self.rules, 0)
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    async def check(self, rule: str, identity: str) -> Decision:
        """Count one request of `identity` under `rule`.

        Raises `RateLimited` when this request exceeds the limit, `RateLimiterUnavailable`
        when the store is down and the rule fails closed; `KeyError` for an unknown rule.
        """
        current = self.rules[rule]
        if not self.enabled:
            return Decision(current.limit, current.limit, 0, counted=False)
        self._counts["checks"] += 1
        try:
            window = await self._counters.hit(current.key(identity), current.window_s)
        except RedisUnavailable as exc:
            closed = rule in self.fail_closed
            self._counts["failed_closed" if closed else "failed_open"] += 1
            self._log_store_failure(rule, "closed" if closed else "open", exc)
            if closed:
                raise RateLimiterUnavailable() from exc
            return Decision(current.limit, current.limit, 0, counted=False)
        reset_s = math.ceil(window.reset_s)
        if window.count > current.limit:
            self._counts["rejected"] += 1
            self._rejected_by_rule[rule] += 1
            retry_after_s = max(1, reset_s)
            raise RateLimited(
                retry_after_s,
                f"At most {current.limit} requests per {current.window_s} s; "
                f"retry in {retry_after_s} s.",
            )
        return Decision(current.limit, current.limit - window.count, reset_s)

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(
            **self._counts,
            rejected_by_rule=types.MappingProxyType(dict(self._rejected_by_rule)),
        )

    def _log_store_failure(self, rule: str, mode: str, error: RedisUnavailable) -> None:
        # An outage fails every request: one line a second per rule says as much.
        now = trio.current_time()
        logged_at = self._logged_at.get(rule)
        if logged_at is not None and now - logged_at < LOG_EVERY_S:
            self._suppressed[rule] = self._suppressed.get(rule, 0) + 1
            return
        self._logged_at[rule] = now
        log.warning(
            "ratelimit.store_unavailable",
            rule=rule,
            mode=mode,
            error=str(error),
            suppressed=self._suppressed.pop(rule, 0),
        )


def current_limiter() -> RateLimiter:
    """The `RateLimiter` of the app serving the current request."""
    limiter: RateLimiter = current_app.extensions[LIMITER_KEY]
    return limiter


def client_ip() -> str:
    """The client IP the edge middleware settled on ("unknown" without a peer address)."""
    address = request.scope.get("lumiku.client_ip")
    return address if isinstance(address, str) and address else "unknown"


def rate_limited(
    rule: str, identity: Callable[[], str] | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async quart route: count each request under `rule` before running it.

    `rule` is a core rule or an app's `<app>.<rule>` (the limiter knows its scope). The
    identity is `identity()` when given (for "user" rules: the authenticated user's id,
    so apply this decorator inside the one that authenticates), else the client IP. Adds
    the `RateLimit-*` headers to the response, the 429 included; 429 and 503 come from
    `RateLimited` / `RateLimiterUnavailable` through the app's error handlers.
    """
    if rule not in RULE_SCOPES and not APP_RULE.match(rule):
        raise ValueError(f"unknown rate-limit rule {rule!r}")

    def decorate(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(handler)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            limiter = current_limiter()
            who = identity() if identity is not None else ""
            # A user rule without a user (or an identity function) counts per IP, kept
            # apart from user ids by the "ip:" prefix.
            scope = limiter.rules[rule].scope
            who = who or (client_ip() if scope == "ip" else f"ip:{client_ip()}")
            try:
                decision = await limiter.check(rule, who)
            except RateLimited as exc:
                _add_headers(Decision(limiter.rules[rule].limit, 0, exc.retry_after_s))
                raise
            _add_headers(decision)
            return await handler(*args, **kwargs)

        return limited

    return decorate


def _add_headers(decision: Decision) -> None:
    headers = decision.headers()
    if not headers:
        return

    # after_this_request functions run on error-handler responses too (quart's
    # process_response), so the 429 gets them without an app-wide hook.
    @after_this_request
    async def add(response: ResponseTypes) -> ResponseTypes:
        response.headers.update(headers)
        return response
