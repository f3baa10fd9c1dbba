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

import ipaddress
import json
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from lumiku.config_rules import field_problems, production_problems, split_bind
from lumiku.errors import ConfigError, ConfigProblem
from lumiku.settings import (  # re-exported: importers use lumiku.config for all of it
    PASSWORD_PARAMS,
    SECTIONS,
    SPECS,
    SPECS_BY_KEY,
    URL_SECRETS,
    AuthSettings,
    CreditsSettings,
    DatabaseSettings,
    DuitkuSettings,
    FlagsSettings,
    HealthSettings,
    HttpSettings,
    HuggingfaceSettings,
    LogSettings,
    MetricsSettings,
    PaymentsSettings,
    RateLimitSettings,
    RedisSettings,
    Settings,
    ShutdownSettings,
    Spec,
    StorageSettings,
    SystemdEnv,
    iter_settings,
    section_type,
    url_passwords,
)

__all__ = [
    "SECTIONS",
    "SPECS",
    "SPECS_BY_KEY",
    "URL_SECRETS",
    "AuthSettings",
    "ConfigError",
    "CreditsSettings",
    "DatabaseSettings",
    "DuitkuSettings",
    "FlagsSettings",
    "HealthSettings",
    "HttpSettings",
    "HuggingfaceSettings",
    "LogSettings",
    "MetricsSettings",
    "PaymentsSettings",
    "RateLimitSettings",
    "RedisSettings",
    "Settings",
    "ShutdownSettings",
    "Spec",
    "StorageSettings",
    "SystemdEnv",
    "iter_settings",
    "load_settings",
    "redact_url",
    "redacted",
    "section_type",
    "url_passwords",
]


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

# Kubernetes gives every pod service links for every Service of its namespace: a Service
# `lumiku` (or `lumiku-redis`, `lumiku-postgresql`, … whose names start the same) sets
# LUMIKU_SERVICE_HOST=10.0.0.9, LUMIKU_SERVICE_PORT=8000, LUMIKU_SERVICE_PORT_<PORTNAME>=8000,
# LUMIKU_PORT=tcp://10.0.0.9:8000, LUMIKU_PORT_8000_TCP=tcp://10.0.0.9:8000 and
# LUMIKU_PORT_8000_TCP_{PROTO,PORT,ADDR}. They are not settings and are ignored (one log
# line, `config.service_links_ignored`) when both the name and the value have exactly
# that shape; anything else under LUMIKU_ that is no setting stays an error, so a typo
# still stops the start. A setting's own name is looked up first and always wins.
_SERVICE: Final = r"LUMIKU(?:_[A-Z0-9_]+)?"
_PROTOCOL: Final = r"_\d{1,5}_(?:TCP|UDP|SCTP)"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_port(text: str) -> bool:
    return re.fullmatch(r"\d{1,5}", text) is not None


def _is_link_url(text: str) -> bool:
    url = re.fullmatch(r"(?:tcp|udp|sctp)://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):\d{1,5}", text)
    return url is not None and _is_ip(url[1].strip("[]"))


# (name, what its value looks like); a name may read several ways (LUMIKU_SERVICE_PORT is
# `lumiku`'s SERVICE_PORT or `lumiku-service`'s PORT), so every reading is tried.
_LINK_SHAPES: Final[tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...]] = (
    (re.compile(rf"{_SERVICE}_SERVICE_HOST"), _is_ip),
    (re.compile(rf"{_SERVICE}_SERVICE_PORT(?:_[A-Z0-9_]+)?"), _is_port),
    (re.compile(rf"{_SERVICE}_PORT(?:{_PROTOCOL})?"), _is_link_url),
    (re.compile(rf"{_SERVICE}_PORT{_PROTOCOL}_PROTO"), lambda v: v in ("tcp", "udp", "sctp")),
    (re.compile(rf"{_SERVICE}_PORT{_PROTOCOL}_PORT"), _is_port),
    (re.compile(rf"{_SERVICE}_PORT{_PROTOCOL}_ADDR"), _is_ip),
)


def is_service_link(name: str, value: str) -> bool:
    """Whether `name=value` is a Kubernetes service link of a `lumiku…` Service (above)."""
    return any(shape.fullmatch(name) and looks(value) for shape, looks in _LINK_SHAPES)


def env_name(key: str) -> str:
    """The environment variable of a setting: `http.bind` → `LUMIKU_HTTP_BIND`."""
    return "LUMIKU_" + key.replace(".", "_").upper()


ENV_NAMES: Final = {env_name(s.key): s.key for s in SPECS}


@attrs.define
class _Raw:
    """Values gathered so far, each with the source that set it."""

    values: dict[str, tuple[Any, str]] = attrs.field(factory=dict)
    problems: list[ConfigProblem] = attrs.field(factory=list)
    service_links: list[str] = attrs.field(factory=list)

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
    settings = _build(typed, _systemd_env(env), tuple(sorted(raw.service_links)))
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
            flags: list[str] = []
            for sub, subvalue in value.items():
                key = f"{name}.{sub}"
                if key in SPECS_BY_KEY:
                    raw.set(key, subvalue, source)
                elif name == "flags":
                    flags.append(_flag_entry(sub, subvalue))  # `[flags] name = value`
                else:
                    raw.problem(key, source, "unknown setting")
            if flags:
                listed = raw.values.get("flags.values", ([], source))[0]
                raw.set(
                    "flags.values",
                    [*listed, *flags] if isinstance(listed, list) else listed,
                    source,
                )
        elif name in SPECS_BY_KEY:
            raw.set(name, value, source)
        else:
            raw.problem(name, source, "unknown setting")


def _flag_entry(name: str, value: Any) -> str:
    """`[flags] name = value` as a `flags.values` entry: true/false mean on/off."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"{name}={value}"


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
        elif name in NOT_SETTINGS or name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        elif is_service_link(name, value):
            raw.service_links.append(name)
        else:
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


def _build(
    typed: Mapping[str, tuple[Any, str]], systemd: SystemdEnv, service_links: tuple[str, ...]
) -> Settings:
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
    settings = Settings(
        **top, **built, sources=sources, systemd=systemd, service_links=service_links
    )
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
        journal_stream=env.get("JOURNAL_STREAM", ""),
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
                [(k, "***" if k.lower() in PASSWORD_PARAMS else v) for k, v in pairs], safe="*"
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
