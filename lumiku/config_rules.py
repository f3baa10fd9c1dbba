"""What makes a setting valid, and what production additionally demands (SPEC §3).

Pure functions over values; `config.load_settings` calls them and attributes each message to
the key and source that set the value.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from lumiku.setting_formats import flag_entries, package_entries, payment_method

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lumiku.config import Settings

JWT_MIN_LENGTH: Final = 32
JWT_MIN_ENTROPY_BITS: Final = 3.5
_PLACEHOLDER_PREFIXES: Final = (
    "secret",
    "change-this",
    "changethis",
    "change_this",
    "your-secret",
    "your_secret",
    "yoursecret",
    "replace-me",
    "example",
)
_ORIGIN: Final = re.compile(r"^(https?)://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*)(:\d{1,5})?$")
_TEST_MARKERS: Final = ("test", "sandbox", "example")
PROVIDER_OPERATIONS: Final = ("avatar", "pose", "background")


def url_scheme(url: str) -> str:
    """The scheme of `url`, or "" when it does not parse."""
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def split_bind(bind: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); raise ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be host:port, got {bind!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be 0-65535, got {port!r}")
    return host, int(port)


def origin_problem(origin: str) -> str | None:
    if origin == "*":
        return None
    if not _ORIGIN.match(origin):
        return f"{origin!r} is not an origin (scheme://host[:port] or https://*.domain)"
    return None


def _packages(value: Any) -> Iterator[str]:
    if not value:
        yield "needs at least one package"
    try:
        package_entries(value)
    except ValueError as exc:
        yield str(exc)


def _flag_values(value: Any) -> str | None:
    try:
        flag_entries(value)
    except ValueError as exc:
        return str(exc)
    return None


def _payment_method(value: Any) -> str | None:
    try:
        payment_method(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def network_problem(cidr: str) -> str | None:
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return f"{cidr!r} is not an IP address or CIDR"
    return None


_RATE: Final = re.compile(r"^(\d+)/(\d*)([smhd])$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The core's rules; each app declares its own, named "<app>.<rule>" (SPEC §17).
RATE_RULES: Final = (
    "login",
    "register",
    "profile_update",
    "payment_create",
    "payment_callback",
    "health",
    "health_detailed",
)


def parse_rate(text: str) -> tuple[int, int]:
    """`"5/15m"` → (5 requests, 900 s window); raise ValueError when malformed."""
    match = _RATE.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"must look like 5/15m (requests/window with s, m, h or d), got {text!r}")
    window = int(match.group(2) or 1) * _UNIT_S[match.group(3)]
    if window < 1:
        raise ValueError(f"the window must be at least 1s, got {text!r}")
    return int(match.group(1)), window


APP_RULE: Final = re.compile(r"^[a-z][a-z0-9-]{1,40}\.[a-z][a-z0-9_]*$")
# The settings of before per-app rules: each still sets every app's rule of that name.
LEGACY_APP_RULES: Final = ("generate", "upload", "from_preset", "project_create")


def _known_rule(name: str) -> str | None:
    # Which apps exist is not known here: the rate limiter refuses an app rule none declares.
    if name in RATE_RULES or APP_RULE.match(name):
        return None
    return f"{name!r} is not a rate-limit rule (core rules, or <app>.<rule>)"


def _rate(value: Any) -> str | None:
    try:
        parse_rate(value)
    except ValueError as exc:
        return str(exc)
    return None


def _optional_rate(value: Any) -> str | None:
    return _rate(value) if value else None


def parse_app_rate(entry: str) -> tuple[str, str]:
    """`"pose-generator.generate=3/1m"` → (rule, rate); raise ValueError when malformed."""
    name, sep, rate = entry.partition("=")
    name, rate = name.strip(), rate.strip()
    if not sep or not APP_RULE.match(name):
        raise ValueError(f'must look like "<app>.<rule>=N/window", got {entry!r}')
    parse_rate(rate)
    return name, rate


def _app_rate(entry: str) -> str | None:
    try:
        parse_app_rate(entry)
    except ValueError as exc:
        return str(exc)
    return None


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}"

    return check


def _url_schemes(*schemes: str, empty_ok: bool = True) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not value and empty_ok:
            return None
        if url_scheme(value) not in schemes:
            return f"must be a URL with scheme {' or '.join(schemes)}"
        return None

    return check


def _bind(value: Any) -> str | None:
    if value.startswith("fd://") and value[5:].isdigit():
        return None
    try:
        split_bind(value)
    except ValueError as exc:
        return str(exc)
    return None


def _optional_bind(value: Any) -> str | None:
    return _bind(value) if value else None


def _each(check: Callable[[str], str | None]) -> Callable[[Any], Iterator[str]]:
    def run(values: Any) -> Iterator[str]:
        for value in values:
            problem = check(value)
            if problem:
                yield problem

    return run


_FIELD_RULES: Final[dict[str, Callable[[Any], Any]]] = {
    "environment": _one_of("development", "production", "test"),
    "http.bind": _bind,
    "http.cors_origins": _each(origin_problem),
    "http.trusted_proxies": _each(network_problem),
    "http.max_body_bytes": _positive,
    "http.keep_alive_s": _positive,
    "http.ws_ping_interval_s": _positive,
    "http.send_stall_timeout_s": _positive,
    "database.url": _url_schemes("postgresql", "postgres", "sqlite"),
    "database.pool_min_size": _positive,
    "database.pool_max_size": _positive,
    "database.connect_timeout_s": _positive,
    "database.statement_timeout_s": _positive,
    "database.command_timeout_s": _positive,
    "redis.url": _url_schemes("redis", "rediss", "unix"),
    "redis.connect_timeout_s": _positive,
    "redis.command_timeout_s": _positive,
    "storage.min_free_bytes": _non_negative,
    "storage.max_upload_bytes": _positive,
    "storage.url_ttl_s": _positive,
    "shutdown.grace_s": _non_negative,
    "shutdown.readiness_delay_s": _non_negative,
    "log.level": _one_of("debug", "info", "warning", "error"),
    "log.format": _one_of("auto", "json", "console"),
    "auth.token_ttl_s": _positive,
    "auth.lockout_failures": _positive,
    "auth.lockout_window_s": _positive,
    "auth.ws_auth_timeout_s": _positive,
    "auth.argon2_time_cost": _positive,
    "auth.argon2_memory_kib": _positive,
    "auth.argon2_parallelism": _positive,
    "credits.welcome_bonus": _non_negative,
    "credits.reconcile_interval_s": _positive,
    **{f"ratelimit.{rule}": _rate for rule in RATE_RULES},
    "ratelimit.fail_closed": _each(_known_rule),
    "ratelimit.apps": _each(_app_rate),
    **{f"ratelimit.{rule}": _optional_rate for rule in LEGACY_APP_RULES},
    "jobs.per_user_running": _positive,
    "jobs.lease_s": _positive,
    "jobs.backoff_s": _positive,
    "jobs.backoff_max_s": _positive,
    "jobs.poll_s": _positive,
    "health.readiness_cache_s": _non_negative,
    "health.check_timeout_s": _positive,
    "metrics.bind": _optional_bind,
    "duitku.base_url": _url_schemes("http", "https"),
    "duitku.callback_url": _url_schemes("http", "https"),
    "duitku.return_url": _url_schemes("http", "https"),
    "duitku.ip_allowlist": _each(network_problem),
    "duitku.timeout_s": _positive,
    "payments.packages": _packages,
    "flags.values": _flag_values,
    "flags.refresh_s": _positive,
    "payments.expiry_s": _positive,
    "payments.expiry_check_s": _positive,
    "payments.default_method": _payment_method,
    "huggingface.base_url": _url_schemes("http", "https"),
    **{f"providers.{op}": _one_of("local", "huggingface") for op in PROVIDER_OPERATIONS},
    "providers.call_timeout_s": _positive,
    "providers.breaker_failures": _positive,
    "providers.breaker_reset_s": _positive,
}


def field_problems(key: str, value: Any) -> list[str]:
    """What is wrong with one setting's value on its own (empty when it is fine)."""
    rule = _FIELD_RULES.get(key)
    if rule is None:
        return []
    result = rule(value)
    if result is None:
        return []
    if isinstance(result, str):
        return [result]
    return list(result)


def shannon_entropy(text: str) -> float:
    """Bits per character of `text`'s character distribution."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def jwt_secret_problems(secret: str) -> list[str]:
    """Every reason `secret` is too weak to sign production tokens."""
    problems = []
    if len(secret) < JWT_MIN_LENGTH:
        problems.append(f"must be at least {JWT_MIN_LENGTH} characters (has {len(secret)})")
    lowered = secret.lower()
    if lowered.startswith(_PLACEHOLDER_PREFIXES):
        problems.append("is a known placeholder")
    if secret and len(set(secret)) == 1:
        problems.append("is one repeated character")
    if secret.isalpha():
        problems.append("is letters only")
    if secret.isdigit():
        problems.append("is digits only")
    entropy = shannon_entropy(secret)
    if entropy < JWT_MIN_ENTROPY_BITS:
        problems.append(f"has {entropy:.2f} bits/char of entropy, needs {JWT_MIN_ENTROPY_BITS}")
    return problems


def production_problems(settings: Settings) -> list[tuple[str, str]]:
    """(key, message) for every production requirement `settings` misses."""
    out: list[tuple[str, str]] = []
    if url_scheme(settings.database.url) not in ("postgresql", "postgres"):
        out.append(("database.url", "production requires PostgreSQL"))
    if not settings.redis.url:
        out.append(("redis.url", "production requires Redis"))
    out.extend(("auth.jwt_secret", m) for m in jwt_secret_problems(settings.auth.jwt_secret))
    for origin in settings.http.cors_origins:
        if origin == "*":
            out.append(("http.cors_origins", "'*' is not allowed in production"))
        elif not origin.startswith("https://"):
            out.append(("http.cors_origins", f"{origin!r} must be https:// in production"))
    if not settings.metrics.token and not settings.metrics.bind:
        out.append(("metrics.token", "production requires metrics.token or metrics.bind"))
    if settings.payments.enabled:
        out.extend(_payment_problems(settings))
    out.extend(_provider_problems(settings))
    return out


def _provider_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """Hugging Face in production needs its token (elsewhere a token-less, self-hosted
    Inference-API compatible server is allowed)."""
    chosen = [op for op in PROVIDER_OPERATIONS if getattr(settings.providers, op) == "huggingface"]
    if chosen and not settings.huggingface.api_key:
        yield "huggingface.api_key", f"required in production by providers.{chosen[0]}"


def _payment_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    duitku = settings.duitku
    for name in ("merchant_code", "api_key", "callback_url", "return_url"):
        if not getattr(duitku, name):
            yield f"duitku.{name}", "required when payments are enabled"
    for name in ("merchant_code", "api_key", "base_url", "callback_url", "return_url"):
        value = str(getattr(duitku, name)).lower()
        if any(marker in value for marker in _TEST_MARKERS):
            yield f"duitku.{name}", "looks like a test/sandbox/example value"
    for name in ("base_url", "callback_url", "return_url"):
        value = getattr(duitku, name)
        if value and not value.startswith("https://"):
            yield f"duitku.{name}", "must be https:// in production"
    if not duitku.ip_allowlist:
        yield "duitku.ip_allowlist", "required when payments are enabled"
