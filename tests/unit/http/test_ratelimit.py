"""RateLimiter decisions over fake and in-memory counters, and the route decorator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from quart import request
from quart_trio import QuartTrio

from lumiku.apps.builtin import builtin_apps
from lumiku.config import RateLimitSettings
from lumiku.config_rules import LEGACY_APP_RULES
from lumiku.counters import MemoryCounters, Window
from lumiku.errors import RateLimited, RateLimiterUnavailable, RedisUnavailable
from lumiku.http.problems import register_error_handlers
from lumiku.http.ratelimit import (
    LIMITER_KEY,
    RULE_SCOPES,
    AppRule,
    Decision,
    RateLimiter,
    Rule,
    rate_limited,
)

REPO = Path(__file__).resolve().parents[3]

# Two apps' rules, as their App values declare them.
APP_RULES = (
    AppRule("demo.generate", "user", "5/1m"),
    AppRule("demo.upload", "user", "10/1m"),
    AppRule("demo.from_preset", "user", "8/1m"),
    AppRule("demo.project_create", "user", "20/1h"),
    AppRule("other-app.generate", "user", "3/1m"),
)


ONE_A_MINUTE = RateLimitSettings(apps=("demo.generate=1/1m", "demo.upload=1/1m"))


def limiter_of(settings: RateLimitSettings, counters: Any) -> RateLimiter:
    return RateLimiter(settings, counters, APP_RULES)


class BrokenCounters:
    """Counters whose store is down: every call raises RedisUnavailable."""

    def __init__(self) -> None:
        self.calls = 0

    async def hit(self, key: str, window_s: int) -> Window:
        self.calls += 1
        raise RedisUnavailable("redis: ConnectionError: refused")

    async def peek(self, key: str) -> Window:
        self.calls += 1
        raise RedisUnavailable("redis: ConnectionError: refused")

    async def clear(self, key: str) -> None:
        self.calls += 1
        raise RedisUnavailable("redis: ConnectionError: refused")


@attrs.define
class RecordingCounters:
    """MemoryCounters that remember the keys and windows they were asked for."""

    inner: MemoryCounters = attrs.field(factory=MemoryCounters)
    hits: list[tuple[str, int]] = attrs.field(factory=list)

    async def hit(self, key: str, window_s: int) -> Window:
        self.hits.append((key, window_s))
        return await self.inner.hit(key, window_s)

    async def peek(self, key: str) -> Window:
        return await self.inner.peek(key)

    async def clear(self, key: str) -> None:
        await self.inner.clear(key)


def test_every_rule_is_built_from_its_setting() -> None:
    settings = RateLimitSettings(login="7/30s", apps=("demo.generate=2/1h",))
    rules = limiter_of(settings, MemoryCounters()).rules
    assert set(rules) == set(RULE_SCOPES) | {rule.name for rule in APP_RULES}
    assert rules["login"] == Rule("login", "ip", 7, 30)
    assert rules["demo.generate"] == Rule("demo.generate", "user", 2, 3600)
    assert rules["other-app.generate"] == Rule("other-app.generate", "user", 3, 60)  # default
    assert rules["register"] == Rule("register", "ip", 3, 3600)  # the default 3/1h
    assert rules["payment_callback"] == Rule("payment_callback", "ip", 100, 900)


def test_every_core_rule_has_a_setting() -> None:
    fields = {f.name for f in attrs.fields(RateLimitSettings)} - {"enabled", "fail_closed"}
    assert fields - {"apps", *LEGACY_APP_RULES} == set(RULE_SCOPES)


def test_a_legacy_setting_gives_each_app_its_own_rule_of_that_name() -> None:
    settings = RateLimitSettings(generate="7/1m", apps=("other-app.generate=9/1h",))
    rules = limiter_of(settings, MemoryCounters()).rules
    assert rules["demo.generate"] == Rule("demo.generate", "user", 7, 60)
    assert rules["other-app.generate"] == Rule("other-app.generate", "user", 9, 3600)  # apps wins
    assert rules["demo.upload"] == Rule("demo.upload", "user", 10, 60)  # unset: the default


async def test_two_apps_rules_of_one_name_count_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = RateLimitSettings(generate="1/1m")
    limiter = limiter_of(settings, MemoryCounters())
    await limiter.check("demo.generate", "user-1")
    with pytest.raises(RateLimited):
        await limiter.check("demo.generate", "user-1")
    assert (await limiter.check("other-app.generate", "user-1")).remaining == 0


def test_rules_nobody_declares_are_refused() -> None:
    with pytest.raises(ValueError, match=r"nope\.generate"):
        limiter_of(RateLimitSettings(apps=("nope.generate=1/1m",)), MemoryCounters())
    with pytest.raises(ValueError, match=r"nope\.generate"):
        limiter_of(RateLimitSettings(fail_closed=("nope.generate",)), MemoryCounters())
    with pytest.raises(ValueError, match="declared twice"):
        RateLimiter(RateLimitSettings(), MemoryCounters(), [*APP_RULES, APP_RULES[0]])
    with pytest.raises(ValueError, match="generate"):
        AppRule("generate", "user", "1/1m")  # not <app>.<rule>


def test_an_unknown_fail_closed_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="logn"):
        RateLimiter(RateLimitSettings(fail_closed=("logn",)), MemoryCounters())


def test_keys_are_rule_scope_identity_and_long_identities_are_hashed() -> None:
    rule = Rule("login", "ip", 5, 900)
    assert rule.key("203.0.113.9") == "login:ip:203.0.113.9"
    long_key = rule.key("x" * 1000)
    assert long_key.startswith("login:ip:")
    assert len(long_key) == len("login:ip:") + 64
    assert long_key != rule.key("x" * 999)


async def test_requests_up_to_the_limit_pass_with_decreasing_remaining(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(RateLimitSettings(login="3/1m"), MemoryCounters())
    decisions = [await limiter.check("login", "1.2.3.4") for _ in range(3)]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 and d.reset_s == 60 and d.counted for d in decisions)
    assert decisions[0].headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "60",
    }


async def test_past_the_limit_is_rate_limited_until_the_window_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(RateLimitSettings(login="2/1m"), MemoryCounters())
    await limiter.check("login", "1.2.3.4")
    await trio.sleep(20.5)
    await limiter.check("login", "1.2.3.4")
    with pytest.raises(RateLimited) as caught:
        await limiter.check("login", "1.2.3.4")
    assert caught.value.retry_after_s == 40  # ceil(39.5)
    assert caught.value.extra == {"retry_after_s": 40}
    assert (await limiter.check("login", "5.6.7.8")).remaining == 1  # another IP
    await trio.sleep(40)
    assert (await limiter.check("login", "1.2.3.4")).remaining == 1


async def test_rules_count_separately_for_the_same_identity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = RecordingCounters()
    limiter = limiter_of(ONE_A_MINUTE, counters)
    await limiter.check("demo.generate", "user-1")
    await limiter.check("demo.upload", "user-1")
    assert counters.hits == [("demo.generate:user:user-1", 60), ("demo.upload:user:user-1", 60)]


async def test_an_unknown_rule_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        await RateLimiter(RateLimitSettings(), MemoryCounters()).check("nope", "x")


async def test_store_down_fails_closed_for_listed_rules(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(RateLimitSettings(fail_closed=("login",)), BrokenCounters())
    with pytest.raises(RateLimiterUnavailable) as caught:
        await limiter.check("login", "1.2.3.4")
    assert caught.value.status == 503
    assert caught.value.code == "RATE_LIMITER_UNAVAILABLE"
    assert caught.value.retry_after_s > 0
    (record,) = [r for r in caplog.records if r.msg == "ratelimit.store_unavailable"]
    assert record.levelno == logging.WARNING
    fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
    assert fields["rule"] == "login"
    assert fields["mode"] == "closed"


async def test_store_down_fails_open_for_other_rules(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(RateLimitSettings(fail_closed=("login",)), BrokenCounters())
    decision = await limiter.check("health", "1.2.3.4")
    assert decision == Decision(60, 60, 0, counted=False)
    assert decision.headers() == {}
    (record,) = [r for r in caplog.records if r.msg == "ratelimit.store_unavailable"]
    fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
    assert (fields["rule"], fields["mode"]) == ("health", "open")


async def test_default_fail_closed_rules_are_auth_and_money() -> None:
    limiter = limiter_of(RateLimitSettings(), BrokenCounters())
    for rule in ("login", "register", "profile_update", "payment_create", "payment_callback"):
        with pytest.raises(RateLimiterUnavailable):
            await limiter.check(rule, "x")
    for rule in (*(r.name for r in APP_RULES), "health"):
        assert not (await limiter.check(rule, "x")).counted


async def test_an_outage_logs_once_a_second_per_rule_and_counts_every_failure(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiter_of(RateLimitSettings(), BrokenCounters())

    def logged() -> list[dict[str, Any]]:
        return [
            r.fields  # type: ignore[attr-defined]
            for r in caplog.records
            if r.msg == "ratelimit.store_unavailable"
        ]

    for _ in range(5):
        await limiter.check("health", "x")
    await limiter.check("demo.generate", "x")
    assert [(f["rule"], f["suppressed"]) for f in logged()] == [
        ("health", 0),
        ("demo.generate", 0),
    ]
    await trio.sleep(1)
    await limiter.check("health", "x")
    assert [(f["rule"], f["suppressed"]) for f in logged()][-1] == ("health", 4)
    assert limiter.statistics().failed_open == 7


async def test_disabled_limiter_allows_everything_without_touching_the_store() -> None:
    counters = BrokenCounters()
    limiter = RateLimiter(RateLimitSettings(enabled=False, login="1/1m"), counters)
    for _ in range(10):
        decision = await limiter.check("login", "1.2.3.4")
        assert not decision.counted
    assert counters.calls == 0
    assert limiter.statistics().checks == 0


async def test_statistics_count_checks_rejections_and_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(RateLimitSettings(login="1/1m"), MemoryCounters())
    await limiter.check("login", "a")
    for _ in range(2):
        with pytest.raises(RateLimited):
            await limiter.check("login", "a")
    broken = limiter_of(RateLimitSettings(), BrokenCounters())
    with pytest.raises(RateLimiterUnavailable):
        await broken.check("login", "a")
    await broken.check("demo.generate", "a")
    await broken.check("demo.upload", "a")

    stats = limiter.statistics()
    assert (stats.checks, stats.rejected, stats.failed_open, stats.failed_closed) == (3, 2, 0, 0)
    assert stats.rejected_by_rule["login"] == 2
    assert "demo.generate" not in stats.rejected_by_rule  # this limiter has no app rules
    other = broken.statistics()
    assert (other.checks, other.rejected, other.failed_open, other.failed_closed) == (3, 0, 2, 1)
    # a snapshot: later checks do not change it
    await limiter.check("login", "b")
    assert stats.checks == 3
    with pytest.raises(TypeError):
        stats.rejected_by_rule["login"] = 0  # type: ignore[index]


# --- the route decorator -----------------------------------------------------------------


def make_app(limiter: RateLimiter) -> QuartTrio:
    app = QuartTrio(__name__)
    app.extensions[LIMITER_KEY] = limiter
    register_error_handlers(app)

    @app.post("/login")
    @rate_limited("login")
    async def login() -> dict[str, str]:
        return {"ok": "login"}

    @app.post("/generate")
    @rate_limited("demo.generate", identity=lambda: request.headers.get("X-User", ""))
    async def generate() -> dict[str, str]:
        return {"ok": "generate"}

    @app.post("/unauthorized")
    @rate_limited("demo.upload")
    async def upload() -> dict[str, str]:
        return {"ok": "upload"}

    return app


def test_an_unknown_rule_fails_at_decoration_time() -> None:
    with pytest.raises(ValueError, match="logn"):
        rate_limited("logn")


async def test_decorated_route_sends_headers_then_429_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = make_app(RateLimiter(RateLimitSettings(login="2/15m"), MemoryCounters()))
    client = app.test_client()
    scope = {"lumiku.client_ip": "198.51.100.7"}
    first = await client.post("/login", scope_base=scope)
    second = await client.post("/login", scope_base=scope)
    third = await client.post("/login", scope_base=scope)
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert first.headers["RateLimit-Reset"] == "900"
    assert second.headers["RateLimit-Remaining"] == "0"
    assert third.headers["RateLimit-Limit"] == "2"
    assert third.headers["RateLimit-Remaining"] == "0"
    assert third.headers["RateLimit-Reset"] == third.headers["Retry-After"] == "900"
    body = await third.get_json()
    assert body["code"] == "RATE_LIMITED"
    other_ip = await client.post("/login", scope_base={"lumiku.client_ip": "198.51.100.8"})
    assert other_ip.status_code == 200


async def test_user_rules_count_per_identity_and_fall_back_to_the_ip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = RecordingCounters()
    app = make_app(limiter_of(ONE_A_MINUTE, counters))
    client = app.test_client()
    scope = {"lumiku.client_ip": "198.51.100.7"}
    alice = await client.post("/generate", headers={"X-User": "alice"}, scope_base=scope)
    bob = await client.post("/generate", headers={"X-User": "bob"}, scope_base=scope)
    alice_again = await client.post("/generate", headers={"X-User": "alice"}, scope_base=scope)
    nobody = await client.post("/generate", scope_base=scope)
    no_identity = await client.post("/unauthorized", scope_base=scope)
    assert [r.status_code for r in (alice, bob, alice_again, nobody, no_identity)] == [
        200,
        200,
        429,
        200,
        200,
    ]
    assert [key for key, _ in counters.hits] == [
        "demo.generate:user:alice",
        "demo.generate:user:bob",
        "demo.generate:user:alice",
        "demo.generate:user:ip:198.51.100.7",
        "demo.upload:user:ip:198.51.100.7",
    ]


async def test_decorated_route_answers_503_or_passes_when_the_store_is_down() -> None:
    app = make_app(limiter_of(RateLimitSettings(), BrokenCounters()))
    client = app.test_client()
    closed = await client.post("/login")
    assert closed.status_code == 503
    assert (await closed.get_json())["code"] == "RATE_LIMITER_UNAVAILABLE"
    assert "Retry-After" in closed.headers
    assert "RateLimit-Limit" not in closed.headers
    opened = await client.post("/generate", headers={"X-User": "alice"})
    assert opened.status_code == 200
    assert "RateLimit-Limit" not in opened.headers


def test_the_builtin_apps_rules_are_documented_with_their_defaults() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = (REPO / "config" / "lumiku.example.toml").read_text(encoding="utf-8")
    rules = [rule for app in builtin_apps().apps() for rule in app.rate_limits]
    assert rules
    for rule in rules:
        assert f"| `{rule.name}` | {rule.rate} |" in readme, rule.name
        assert f"{rule.name} {rule.rate}" in example, rule.name
