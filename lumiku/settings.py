"""The settings tree: every setting's type, default, help text and whether it is secret.

`config.py` fills it from defaults, TOML, the environment and systemd credentials (and is
the only reader of `os.environ`); everything else receives a `Settings`. Each field's
metadata carries `help` (shown in `config/lumiku.example.toml`; a test fails when a setting
is missing there) and `secret` (redacted in `config show` and in logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

ENVIRONMENTS: Final = ("development", "production", "test")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("auto", "json", "console")


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """Declare one setting with its default and help text."""
    if isinstance(default, list):
        default = tuple(default)
    return attrs.field(default=default, metadata={"help": help, "secret": secret})


@attrs.frozen
class HttpSettings:
    bind: str = setting("127.0.0.1:8000", "Address to listen on, host:port ([::1]:8000 for IPv6).")
    cors_origins: tuple[str, ...] = setting(
        [], "Allowed CORS origins: exact origins or https://*.example.com wildcards."
    )
    trusted_proxies: tuple[str, ...] = setting(
        [], "CIDRs of reverse proxies whose X-Forwarded-For is believed."
    )
    reuse_port: bool = setting(
        False, "Set SO_REUSEPORT so several instances (lumiku@N) share one port."
    )
    max_body_bytes: int = setting(1_048_576, "Largest accepted request body, in bytes.")
    keep_alive_s: float = setting(5.0, "Idle keep-alive connections are closed after this.")
    ws_ping_interval_s: float = setting(20.0, "Interval of server pings on websockets.")
    send_stall_timeout_s: float = setting(
        20.0,
        "Drop a connection whose client stopped reading (sent data unacknowledged this "
        "long; TCP_USER_TIMEOUT). Keep it below shutdown.grace_s.",
    )


@attrs.frozen
class DatabaseSettings:
    url: str = setting(
        "",
        "postgresql://user:pass@host:5432/db or sqlite:///path.db; empty = SQLite under var_dir.",
        secret=True,
    )
    auto_migrate: bool = setting(
        False, "Apply pending migrations at start in production (development always does)."
    )
    pool_min_size: int = setting(1, "PostgreSQL pool: connections kept open.")
    pool_max_size: int = setting(10, "PostgreSQL pool: most connections at once.")
    connect_timeout_s: float = setting(5.0, "Give up connecting to the database after this.")
    statement_timeout_s: float = setting(30.0, "PostgreSQL statement_timeout for every session.")
    command_timeout_s: float = setting(
        8.0,
        "Client-side bound on each PostgreSQL call (pool acquire, connect, statements, commit):"
        " past it the call fails as unavailable (503 DATABASE_UNAVAILABLE), even when the"
        " server cannot be reached; migrations get statement_timeout_s instead.",
    )


@attrs.frozen
class RedisSettings:
    url: str = setting(
        "",
        "redis://[:password@]host:6379/0 (rediss:// for TLS); empty = in-process bus and limits.",
        secret=True,
    )
    connect_timeout_s: float = setting(2.0, "Give up connecting to Redis after this.")
    command_timeout_s: float = setting(
        1.0,
        "Client-side bound on each Redis call (rate-limit counters, events, flags): past it"
        " Redis counts as unavailable (fail-closed rate limits answer 503).",
    )


@attrs.frozen
class StorageSettings:
    path: str = setting("", "Directory for stored files; empty = <var_dir>/files.")
    min_free_bytes: int = setting(
        104_857_600,
        "Writes are refused (507), and --check and health report a problem, below this much "
        "free space.",
    )
    max_upload_bytes: int = setting(10_485_760, "Largest accepted uploaded file (10 MiB).")
    url_ttl_s: int = setting(
        3600, "Lifetime of signed file URLs (/files/...?exp=&sig=) in API responses."
    )


@attrs.frozen
class ShutdownSettings:
    grace_s: float = setting(25.0, "Time in-flight requests and jobs get to finish on SIGTERM.")
    readiness_delay_s: float = setting(
        0.0,
        "After SIGTERM, how long the listener stays open while /health/readiness answers 503 "
        "draining, so load balancers stop sending new requests first. Counted in grace_s: "
        "keep it well below.",
    )


@attrs.frozen
class LogSettings:
    level: str = setting("info", "debug | info | warning | error.")
    format: str = setting("auto", "auto (console on a TTY, else JSON) | json | console.")


@attrs.frozen
class AuthSettings:
    jwt_secret: str = setting(
        "",
        "HS256 signing secret; empty in development = generated into <var_dir>/jwt.secret.",
        secret=True,
    )
    token_ttl_s: int = setting(604_800, "Lifetime of an access token (7 days).")
    lockout_failures: int = setting(5, "Failed logins for one email that lock it out.")
    lockout_window_s: int = setting(900, "Window for counting failed logins (15 min).")
    ws_auth_timeout_s: float = setting(
        10.0, "A websocket must authenticate within this, else it is closed with 4401."
    )
    argon2_time_cost: int = setting(3, "argon2id iterations for new password hashes.")
    argon2_memory_kib: int = setting(65_536, "argon2id memory for new password hashes, KiB.")
    argon2_parallelism: int = setting(4, "argon2id lanes for new password hashes.")


@attrs.frozen
class CreditsSettings:
    welcome_bonus: int = setting(100, "Credits granted to every new account.")
    unlimited_apps: tuple[str, ...] = setting(
        ["avatar-creator", "pose-generator"],
        "Apps that users tagged enterprise_unlimited use without paying.",
    )
    reconcile_interval_s: float = setting(
        86_400.0, "How often the in-process ledger audit runs and logs its result."
    )


@attrs.frozen
class RateLimitSettings:
    enabled: bool = setting(True, "Enforce the rate limits below.")
    fail_closed: tuple[str, ...] = setting(
        ["login", "register", "profile_update", "payment_create", "payment_callback"],
        "Rules that refuse requests (503) when the limiter's store is unreachable; the rest allow.",
    )
    login: str = setting("5/15m", "Login attempts per client IP.")
    register: str = setting("3/1h", "Registrations per client IP.")
    profile_update: str = setting("10/1h", "Profile updates per user.")
    payment_create: str = setting("10/1m", "Payments started per user.")
    payment_callback: str = setting("100/15m", "Payment callbacks per client IP.")
    health: str = setting("60/1m", "Health probes per client IP.")
    health_detailed: str = setting("30/1m", "Detailed health reports per client IP.")
    apps: tuple[str, ...] = setting(
        [],
        'Rules of the apps, each "<app>.<rule>=N/window" (e.g. "pose-generator.generate=3/1m"); '
        "a rule not listed keeps the app's default.",
    )
    # Before rules were per app (SPEC §17) one setting served every app's rule of that name;
    # a value set here still does, for each app separately (ratelimit.apps wins).
    generate: str = setting("", "Deprecated: every app's <app>.generate rule; use apps.")
    upload: str = setting("", "Deprecated: every app's <app>.upload rule; use apps.")
    from_preset: str = setting("", "Deprecated: every app's <app>.from_preset rule; use apps.")
    project_create: str = setting(
        "", "Deprecated: every app's <app>.project_create rule; use apps."
    )


@attrs.frozen
class JobsSettings:
    per_user_running: int = setting(2, "Most running jobs per user, across all instances.")
    lease_s: float = setting(30.0, "A claimed job's lease; renewed every lease/3 by heartbeats.")
    backoff_s: float = setting(
        10.0, "First retry delay of a TRANSIENT failure; doubles per attempt."
    )
    backoff_max_s: float = setting(600.0, "Longest retry delay.")
    poll_s: float = setting(1.0, "Workers look for due jobs at least this often.")


@attrs.frozen
class HealthSettings:
    readiness_cache_s: float = setting(1.0, "Readiness results are reused for this long.")
    check_timeout_s: float = setting(0.5, "Each readiness dependency check times out after this.")


@attrs.frozen
class MetricsSettings:
    token: str = setting("", "Bearer token required by /metrics.", secret=True)
    bind: str = setting("", "Serve /metrics only on this internal host:port instead.")


@attrs.frozen
class PaymentsSettings:
    enabled: bool = setting(False, "Offer credit purchases through Duitku.")
    packages: tuple[str, ...] = setting(
        ["starter:100:15000", "creator:500:65000", "studio:1200:140000"],
        'Credit packages on sale, each "id:credits:price_idr".',
    )
    expiry_s: int = setting(3600, "A payment still pending this long after creation expires.")
    expiry_check_s: float = setting(60.0, "How often pending payments are checked for expiry.")
    default_method: str = setting(
        "VC", "Duitku payment method when the client names none (VC = credit card)."
    )


@attrs.frozen
class DuitkuSettings:
    merchant_code: str = setting("", "Duitku merchant code.")
    api_key: str = setting("", "Duitku API key.", secret=True)
    base_url: str = setting(
        "https://sandbox.duitku.com/webapi/api/merchant", "Duitku API base URL."
    )
    callback_url: str = setting("", "Public URL Duitku posts payment callbacks to.")
    return_url: str = setting("", "Where Duitku sends the buyer after paying.")
    ip_allowlist: tuple[str, ...] = setting([], "CIDRs allowed to send payment callbacks.")
    timeout_s: float = setting(10.0, "Give up on a Duitku inquiry after this.")


@attrs.frozen
class FlagsSettings:
    values: tuple[str, ...] = setting(
        [], 'Feature flags, each "name=on|off|<percent>" (also written `name = value` in [flags]).'
    )
    beta_users: tuple[str, ...] = setting(
        [], "User ids or emails that get every flag not switched off."
    )
    beta_tags: tuple[str, ...] = setting(
        ["beta_tester"], "Users with one of these tags get every flag not switched off."
    )
    refresh_s: float = setting(1.0, "How often each instance re-reads the runtime flags in Redis.")


@attrs.frozen
class HuggingfaceSettings:
    api_key: str = setting("", "Hugging Face Inference API token.", secret=True)
    base_url: str = setting(
        "https://api-inference.huggingface.co", "Inference-API compatible base URL."
    )
    avatar_model: str = setting(
        "stabilityai/stable-diffusion-xl-base-1.0", "Text-to-image model for avatars."
    )
    pose_model: str = setting(
        "stabilityai/stable-diffusion-xl-base-1.0",
        "Text-to-image model for posed figures (the prompt plus a description of the pose).",
    )
    pose_control_model: str = setting(
        "",
        "Image-to-image (ControlNet openpose) model fed the skeleton map; set, it replaces "
        "pose_model.",
    )
    background_model: str = setting(
        "stabilityai/stable-diffusion-xl-base-1.0",
        "Text-to-image model for ai_generate backgrounds (composited locally).",
    )


@attrs.frozen
class ProvidersSettings:
    avatar: str = setting("local", "Who renders avatars: local | huggingface.")
    pose: str = setting("local", "Who renders posed figures: local | huggingface.")
    background: str = setting("local", "Who paints ai_generate backgrounds: local | huggingface.")
    call_timeout_s: float = setting(
        120.0, "An HTTP provider call giving no answer within this is a TRANSIENT failure."
    )
    breaker_failures: int = setting(
        5, "Consecutive failures (5xx, 429, timeouts, network) that open a provider's breaker."
    )
    breaker_reset_s: float = setting(
        60.0, "An open breaker lets one probe call through after this."
    )


@attrs.frozen
class SystemdEnv:
    """What systemd told this process through its environment (not settings)."""

    notify_socket: str = ""
    watchdog_usec: int = 0
    watchdog_pid: int = 0
    listen_fds: int = 0
    listen_pid: int = 0
    listen_fdnames: tuple[str, ...] = ()
    journal_stream: str = ""  # JOURNAL_STREAM: "<device>:<inode>" of the journal's stream


@attrs.frozen
class Settings:
    environment: str = setting("development", "development | production | test.")
    var_dir: str = setting("./var", "Directory for the embedded default's state.")
    http: HttpSettings = attrs.field(factory=HttpSettings)
    database: DatabaseSettings = attrs.field(factory=DatabaseSettings)
    redis: RedisSettings = attrs.field(factory=RedisSettings)
    storage: StorageSettings = attrs.field(factory=StorageSettings)
    shutdown: ShutdownSettings = attrs.field(factory=ShutdownSettings)
    log: LogSettings = attrs.field(factory=LogSettings)
    auth: AuthSettings = attrs.field(factory=AuthSettings)
    credits: CreditsSettings = attrs.field(factory=CreditsSettings)
    ratelimit: RateLimitSettings = attrs.field(factory=RateLimitSettings)
    jobs: JobsSettings = attrs.field(factory=JobsSettings)
    health: HealthSettings = attrs.field(factory=HealthSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    payments: PaymentsSettings = attrs.field(factory=PaymentsSettings)
    duitku: DuitkuSettings = attrs.field(factory=DuitkuSettings)
    flags: FlagsSettings = attrs.field(factory=FlagsSettings)
    huggingface: HuggingfaceSettings = attrs.field(factory=HuggingfaceSettings)
    providers: ProvidersSettings = attrs.field(factory=ProvidersSettings)
    # Not settings: where each value came from, what systemd passed us, and the Kubernetes
    # service links (`LUMIKU_PORT`, `LUMIKU_SERVICE_HOST`, …) that were ignored.
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)
    systemd: SystemdEnv = attrs.field(factory=SystemdEnv, eq=False)
    service_links: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction by value in logs."""
        values = [
            str(value)
            for key, value, spec in iter_settings(self)
            if spec.secret and value and key not in URL_SECRETS
        ]
        for url in (self.database.url, self.redis.url):
            values.extend(url_passwords(url))
        return tuple(v for v in values if len(v) >= 4)


@attrs.frozen
class Spec:
    """One leaf setting: its dotted key, type and documentation."""

    key: str
    type: Any
    default: Any
    help: str
    secret: bool


def _sections() -> dict[str, type]:
    attrs.resolve_types(Settings)
    return {
        f.name: f.type
        for f in attrs.fields(Settings)
        if isinstance(f.type, type) and attrs.has(f.type) and f.type is not SystemdEnv
    }


def all_specs() -> tuple[Spec, ...]:
    """Every setting, top-level ones first, in declaration order."""
    attrs.resolve_types(Settings)
    specs = [
        Spec(f.name, f.type, f.default, f.metadata["help"], f.metadata["secret"])
        for f in attrs.fields(Settings)
        if "help" in f.metadata
    ]
    for name, cls in _sections().items():
        attrs.resolve_types(cls)
        specs.extend(
            Spec(f"{name}.{f.name}", f.type, f.default, f.metadata["help"], f.metadata["secret"])
            for f in attrs.fields(cls)
        )
    return tuple(specs)


SPECS: Final = all_specs()
SPECS_BY_KEY: Final = {s.key: s for s in SPECS}
SECTIONS: Final = tuple(_sections())


def section_type(name: str) -> type:
    return _sections()[name]


def iter_settings(settings: Settings) -> list[tuple[str, Any, Spec]]:
    """(key, value, spec) for every setting of `settings`."""
    out = []
    for spec in SPECS:
        obj: Any = settings
        for part in spec.key.split("."):
            obj = getattr(obj, part)
        out.append((spec.key, obj, spec))
    return out


# Secret settings whose value is a URL: only the password inside them is hidden.
URL_SECRETS: Final = frozenset({"database.url", "redis.url"})
PASSWORD_PARAMS: Final = frozenset({"password", "pass", "pwd", "passwd", "sslpassword"})


def url_passwords(url: str) -> list[str]:
    """The passwords inside `url` (userinfo and password-like query parameters), both as
    written and URL-decoded."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in PASSWORD_PARAMS and v]
    except ValueError:
        return []
    return sorted({form for p in found for form in (p, unquote(p))})
