"""Configuration: the settings tree and `load_settings()`, the ONLY reader of `os.environ`.

Sources, later wins (SPEC §3): built-in defaults → TOML file (`--config`, else
`$LUMIKU_CONFIG`, else `/etc/lumiku/lumiku.toml` when it exists) → environment
`LUMIKU_<SECTION>_<KEY>` (the seed names such as `DATABASE_URL` are aliases, and lose to the
`LUMIKU_` name) → systemd credentials `$CREDENTIALS_DIRECTORY/<section>.<key>` for secrets.

Each field's metadata carries `help` (shown in `config/lumiku.example.toml`; a test fails when
a setting is missing there) and `secret` (redacted in `config show` and in logs). Every
problem is collected and raised together as one `ConfigError`, each naming key and source.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from typing import Any, Final

import attrs

from lumiku.config_rules import field_problems, production_problems, split_bind
from lumiku.errors import ConfigError, ConfigProblem

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


@attrs.frozen
class RedisSettings:
    url: str = setting(
        "",
        "redis://[:password@]host:6379/0 (rediss:// for TLS); empty = in-process bus and limits.",
        secret=True,
    )
    connect_timeout_s: float = setting(2.0, "Give up connecting to Redis after this.")


@attrs.frozen
class StorageSettings:
    path: str = setting("", "Directory for stored files; empty = <var_dir>/files.")
    min_free_bytes: int = setting(
        104_857_600, "--check and health report a problem below this much free space."
    )


@attrs.frozen
class ShutdownSettings:
    grace_s: float = setting(25.0, "Time in-flight requests and jobs get to finish on SIGTERM.")


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
    generate: str = setting("5/1m", "Generation requests per user.")
    upload: str = setting("10/1m", "Uploads per user.")
    from_preset: str = setting("8/1m", "From-preset generations per user.")
    project_create: str = setting("20/1h", "Projects created per user.")
    payment_create: str = setting("10/1m", "Payments started per user.")
    payment_callback: str = setting("100/15m", "Payment callbacks per client IP.")
    health: str = setting("60/1m", "Health probes per client IP.")
    health_detailed: str = setting("30/1m", "Detailed health reports per client IP.")


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


@attrs.frozen
class HuggingfaceSettings:
    api_key: str = setting("", "Hugging Face Inference API token.", secret=True)
    base_url: str = setting(
        "https://api-inference.huggingface.co", "Inference-API compatible base URL."
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
    health: HealthSettings = attrs.field(factory=HealthSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    payments: PaymentsSettings = attrs.field(factory=PaymentsSettings)
    duitku: DuitkuSettings = attrs.field(factory=DuitkuSettings)
    huggingface: HuggingfaceSettings = attrs.field(factory=HuggingfaceSettings)
    # Not settings: where each value came from, and what systemd passed us.
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)
    systemd: SystemdEnv = attrs.field(factory=SystemdEnv, eq=False)

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
_PASSWORD_PARAMS: Final = frozenset({"password", "pass", "pwd", "passwd", "sslpassword"})


def url_passwords(url: str) -> list[str]:
    """The passwords inside `url` (userinfo and password-like query parameters), both as
    written and URL-decoded."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _PASSWORD_PARAMS and v]
    except ValueError:
        return []
    return sorted({form for p in found for form in (p, unquote(p))})


# --- loading ---------------------------------------------------------------------------

DEFAULT_CONFIG_PATH: Final = "/etc/lumiku/lumiku.toml"

ALIASES: Final[Mapping[str, str]] = {
    "DATABASE_URL": "database.url",
    "REDIS_URL": "redis.url",
    "JWT_SECRET": "auth.jwt_secret",
    "CORS_ORIGIN": "http.cors_origins",
    "LOG_LEVEL": "log.level",
    "LOG_FORMAT": "log.format",
    "DUITKU_MERCHANT_CODE": "duitku.merchant_code",
    "DUITKU_API_KEY": "duitku.api_key",
    "DUITKU_BASE_URL": "duitku.base_url",
    "DUITKU_CALLBACK_URL": "duitku.callback_url",
    "DUITKU_RETURN_URL": "duitku.return_url",
    "HUGGINGFACE_API_KEY": "huggingface.api_key",
}
# LUMIKU_ variables that are not settings (read by bin/ scripts and the test suite).
NOT_SETTINGS: Final = frozenset({"LUMIKU_CONFIG", "LUMIKU_REQUIRE_SERVICES"})
NOT_SETTINGS_PREFIXES: Final = ("LUMIKU_TEST_", "LUMIKU_BENCH_")


def env_name(key: str) -> str:
    """The environment variable of a setting: `http.bind` → `LUMIKU_HTTP_BIND`."""
    return "LUMIKU_" + key.replace(".", "_").upper()


ENV_NAMES: Final = {env_name(s.key): s.key for s in SPECS}


@attrs.define
class _Raw:
    """Values gathered so far, each with the source that set it."""

    values: dict[str, tuple[Any, str]] = attrs.field(factory=dict)
    problems: list[ConfigProblem] = attrs.field(factory=list)

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = (value, source)

    def problem(self, key: str, source: str, message: str) -> None:
        self.problems.append(ConfigProblem(key, source, message))


def load_settings(
    config_path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bind: str | None = None,
    default_path: str = DEFAULT_CONFIG_PATH,
) -> Settings:
    """Build the effective settings; raise `ConfigError` listing every problem.

    Side effect: outside production, an empty `auth.jwt_secret` is read from (or generated
    into, mode 0600) `<var_dir>/jwt.secret`, so tokens survive restarts.
    """
    env = os.environ if environ is None else environ
    raw = _Raw()
    path = config_path or env.get("LUMIKU_CONFIG") or None
    if path is None and os.path.exists(default_path):
        path = default_path
    if path is not None:
        _read_toml(raw, path)
    _read_env(raw, env)
    if bind is not None:
        raw.set("http.bind", bind, "command line --bind")
    _read_credentials(raw, env.get("CREDENTIALS_DIRECTORY", ""))
    typed = _coerce_all(raw)
    for key, (value, source) in typed.items():
        for message in field_problems(key, value):
            raw.problem(key, source, message)
    settings = _build(typed, _systemd_env(env))
    if settings.is_production:
        already = {p.key for p in raw.problems}
        for key, message in production_problems(settings):
            if key not in already:
                raw.problem(key, settings.sources.get(key, "default"), message)
    else:
        settings = _with_dev_secret(raw, settings)
    if raw.problems:
        raise ConfigError(raw.problems)
    return settings


def _read_toml(raw: _Raw, path: str) -> None:
    source = f"file {path}"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raw.problem("--config", source, "file not found")
        return
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raw.problem("--config", source, f"cannot read: {exc}")
        return
    for name, value in data.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raw.problem(name, source, "must be a table ([" + name + "])")
                continue
            for sub, subvalue in value.items():
                key = f"{name}.{sub}"
                if key in SPECS_BY_KEY:
                    raw.set(key, subvalue, source)
                else:
                    raw.problem(key, source, "unknown setting")
        elif name in SPECS_BY_KEY:
            raw.set(name, value, source)
        else:
            raw.problem(name, source, "unknown setting")


def _read_env(raw: _Raw, env: Mapping[str, str]) -> None:
    for name, key in ALIASES.items():
        if name in env:
            raw.set(key, env[name], f"env {name}")
    _redis_parts_alias(raw, env)
    if "PORT" in env:
        try:
            host = split_bind(str(raw.values.get("http.bind", (HttpSettings().bind, ""))[0]))[0]
        except ValueError:
            host = "127.0.0.1"
        raw.set("http.bind", f"{_join_host(host)}:{env['PORT']}", "env PORT")
    for name, value in env.items():
        if not name.startswith("LUMIKU_"):
            continue
        if name in ENV_NAMES:
            raw.set(ENV_NAMES[name], value, f"env {name}")
        elif name not in NOT_SETTINGS and not name.startswith(NOT_SETTINGS_PREFIXES):
            raw.problem(name, f"env {name}", "unknown setting")


def _redis_parts_alias(raw: _Raw, env: Mapping[str, str]) -> None:
    if "REDIS_URL" in env or "REDIS_HOST" not in env:
        return
    from urllib.parse import quote

    password = env.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    url = f"redis://{auth}{_join_host(env['REDIS_HOST'])}:{env.get('REDIS_PORT', '6379')}/0"
    raw.set("redis.url", url, "env REDIS_HOST/REDIS_PORT/REDIS_PASSWORD")


def _read_credentials(raw: _Raw, directory: str) -> None:
    if not directory:
        return
    for spec in SPECS:
        path = os.path.join(directory, spec.key)
        if spec.secret and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    raw.set(spec.key, f.read().rstrip("\r\n"), f"credential {path}")
            except (OSError, UnicodeDecodeError) as exc:
                raw.problem(spec.key, f"credential {path}", f"cannot read: {exc}")


def _coerce_all(raw: _Raw) -> dict[str, tuple[Any, str]]:
    typed: dict[str, tuple[Any, str]] = {}
    for key, (value, source) in raw.values.items():
        try:
            typed[key] = (_coerce(SPECS_BY_KEY[key].type, value), source)
        except ValueError as exc:
            raw.problem(key, source, str(exc))
    return typed


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _coerce(kind: Any, value: Any) -> Any:
    """Convert a TOML value or an environment string to the setting's type."""
    from_env = isinstance(value, str)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, got {value!r}")
    if kind is int or kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            number = kind(value.strip()) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(
                f"must be {'an integer' if kind is int else 'a number'}, got {value!r}"
            ) from None
        if kind is int and not isinstance(number, int):
            raise ValueError(f"must be an integer, got {value!r}")
        return kind(number)
    if kind == tuple[str, ...]:
        if from_env:
            text = value.strip()
            try:
                items = json.loads(text) if text.startswith("[") else text.split(",")
            except (json.JSONDecodeError, RecursionError):
                raise ValueError(f"must be a JSON list or comma-separated, got {value!r}") from None
        else:
            items = value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"must be a list of strings, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    raise ValueError(f"unsupported setting type {kind!r}")  # pragma: no cover - a bug in the tree


def _build(typed: Mapping[str, tuple[Any, str]], systemd: SystemdEnv) -> Settings:
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, (value, _source) in typed.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections[section][name] = value
        else:
            top[key] = value
    sources = {spec.key: typed.get(spec.key, (None, "default"))[1] for spec in SPECS}
    built = {name: section_type(name)(**values) for name, values in sections.items()}
    settings = Settings(**top, **built, sources=sources, systemd=systemd)
    var_dir = settings.var_dir.rstrip("/") or "/"
    if not settings.database.url:
        settings = attrs.evolve(
            settings, database=attrs.evolve(settings.database, url=f"sqlite:///{var_dir}/lumiku.db")
        )
    if not settings.storage.path:
        settings = attrs.evolve(
            settings, storage=attrs.evolve(settings.storage, path=f"{var_dir}/files")
        )
    return settings


def _systemd_env(env: Mapping[str, str]) -> SystemdEnv:
    def number(name: str) -> int:
        try:
            return int(env.get(name, "0") or 0)
        except ValueError:
            return 0

    names = env.get("LISTEN_FDNAMES", "")
    return SystemdEnv(
        notify_socket=env.get("NOTIFY_SOCKET", ""),
        watchdog_usec=number("WATCHDOG_USEC"),
        watchdog_pid=number("WATCHDOG_PID"),
        listen_fds=number("LISTEN_FDS"),
        listen_pid=number("LISTEN_PID"),
        listen_fdnames=tuple(names.split(":")) if names else (),
    )


def _with_dev_secret(raw: _Raw, settings: Settings) -> Settings:
    if settings.auth.jwt_secret:
        return settings
    path = os.path.join(settings.var_dir, "jwt.secret")
    try:
        os.makedirs(settings.var_dir, exist_ok=True)
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.read().strip()
        except FileNotFoundError:
            secret = ""
        if not secret:
            secret = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secret + "\n")
    except (OSError, ValueError) as exc:
        raw.problem("auth.jwt_secret", f"generated {path}", f"cannot read or create: {exc}")
        return settings
    sources = {**settings.sources, "auth.jwt_secret": f"generated {path}"}
    return attrs.evolve(
        settings, auth=attrs.evolve(settings.auth, jwt_secret=secret), sources=sources
    )


def _join_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def redact_url(url: str) -> str:
    """`url` with every password in it (userinfo or query) replaced by `***`."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not url_passwords(url):
        return url  # nothing to hide; urlunsplit would also mangle sqlite:////abs paths
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password:
            userinfo, _, host = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() in _PASSWORD_PARAMS else v) for k, v in pairs], safe="*"
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "***"


def redacted(settings: Settings) -> list[tuple[str, Any, str]]:
    """(key, value, source) of every setting, secrets hidden: for `lumiku config show`."""
    out = []
    for key, value, spec in iter_settings(settings):
        if key in URL_SECRETS:
            value = redact_url(value)
        elif spec.secret and value:
            value = "<redacted>"
        out.append((key, value, settings.sources.get(key, "default")))
    return out
