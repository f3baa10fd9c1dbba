"""Configuration loading (SPEC §2, §3): documentation, sources, aliases, problems, production.

Every load passes `environ` explicitly and a `default_path` that does not exist, and puts
`var_dir` under `tmp_path`, so neither the host's environment and /etc nor the repository
are touched.
"""

from __future__ import annotations

import stat
import textwrap
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumiku import config
from lumiku.config import (
    ALIASES,
    ENV_NAMES,
    SPECS,
    SPECS_BY_KEY,
    Settings,
    env_name,
    load_settings,
    redacted,
)
from lumiku.errors import ConfigError, ConfigProblem

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "lumiku.example.toml"
PRODUCTION = REPO / "config" / "production.toml"

STRONG_SECRET = "Kq8vN2pL7xR4tY9wZ3mB6cF1hJ5dS0gA-eUoIi_W"
SECRET_KEYS = sorted(s.key for s in SPECS if s.secret)


# --- helpers ----------------------------------------------------------------------------


def load(
    tmp_path: Path,
    config_path: str | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Settings:
    environ = {"LUMIKU_VAR_DIR": str(tmp_path / "var"), **(env or {})}
    return load_settings(
        config_path, environ=environ, default_path=str(tmp_path / "absent.toml"), **kwargs
    )


def problems(
    tmp_path: Path,
    config_path: str | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config_path, env, **kwargs)
    return list(info.value.problems)


def write_toml(tmp_path: Path, text: str, name: str = "lumiku.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def values(settings: Settings) -> dict[str, Any]:
    return {key: value for key, value, _spec in config.iter_settings(settings)}


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{sub}": subvalue for sub, subvalue in value.items()})
        else:
            flat[name] = value
    return flat


def comments_above_keys(text: str) -> dict[str, str]:
    """Each key of a TOML file → the comment lines directly above it, joined."""
    section, comment, out = "", [], {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]").strip()
        elif "=" in stripped:
            name = stripped.split("=", 1)[0].strip()
            out[f"{section}.{name}" if section else name] = " ".join(comment)
        comment = []
    return out


def production_env(**overrides: str | None) -> dict[str, str]:
    """A production environment that passes every production rule; None removes a variable."""
    env: dict[str, str | None] = {
        "LUMIKU_ENVIRONMENT": "production",
        "LUMIKU_DATABASE_URL": "postgresql://lumiku@db.internal:5432/lumiku",
        "LUMIKU_REDIS_URL": "redis://cache.internal:6379/0",
        "LUMIKU_AUTH_JWT_SECRET": STRONG_SECRET,
        "LUMIKU_METRICS_TOKEN": "metrics-T0ken-4471",
        "LUMIKU_HTTP_CORS_ORIGINS": "https://app.lumiku.co.id,https://*.lumiku.co.id",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


# --- config/lumiku.example.toml -----------------------------------------------------------


def test_example_sets_every_setting_and_nothing_else_in_tree_order() -> None:
    keys = list(flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))))
    assert set(SPECS_BY_KEY) - set(keys) == set(), "settings missing from the example"
    assert set(keys) - set(SPECS_BY_KEY) == set(), "stale keys in the example"
    assert keys == [spec.key for spec in SPECS]


def test_example_values_are_the_defaults() -> None:
    flat = flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    for key, value in flat.items():
        default = SPECS_BY_KEY[key].default
        value = tuple(value) if isinstance(value, list) else value
        assert (value, type(value)) == (default, type(default)), key


def test_example_documents_every_key_with_help_env_name_and_credential() -> None:
    documented = comments_above_keys(EXAMPLE.read_text(encoding="utf-8"))
    assert set(documented) == set(SPECS_BY_KEY)
    for spec in SPECS:
        comment = documented[spec.key]
        assert spec.help in comment, spec.key
        assert env_name(spec.key) in comment, spec.key
        if spec.secret:
            assert "credential" in comment, spec.key
            assert spec.key in comment, spec.key
    for alias, key in ALIASES.items():
        assert alias in documented[key], alias


def test_example_header_explains_source_order_and_aliases() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    header = text[: text.index("\nenvironment =")].lower()
    order = header[header.index("later wins") :]
    positions = [order.index(word) for word in ("defaults", "toml", "environment", "credential")]
    assert positions == sorted(positions)
    assert "credentials_directory" in header
    for name in [*ALIASES, "PORT", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"]:
        assert name.lower() in header, name


def test_loading_the_example_equals_loading_nothing(tmp_path: Path) -> None:
    from_example = load(tmp_path, str(EXAMPLE))
    from_nothing = load(tmp_path)
    assert from_example == from_nothing
    assert from_example.sources["http.bind"] == f"file {EXAMPLE}"
    assert from_nothing.sources["http.bind"] == "default"


# --- sources and precedence ---------------------------------------------------------------


def test_each_source_beats_the_one_before(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        [auth]
        jwt_secret = "from-file"
        [log]
        level = "warning"
        """,
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "auth.jwt_secret").write_text("from-credential\n", encoding="utf-8")

    settings = load(tmp_path)
    assert settings.log.level == "info"
    assert settings.sources["log.level"] == "default"

    settings = load(tmp_path, path)
    assert (settings.log.level, settings.auth.jwt_secret) == ("warning", "from-file")
    assert settings.sources["auth.jwt_secret"] == f"file {path}"

    env = {"LOG_LEVEL": "error", "JWT_SECRET": "from-alias"}
    settings = load(tmp_path, path, env)
    assert (settings.log.level, settings.auth.jwt_secret) == ("error", "from-alias")
    assert settings.sources["log.level"] == "env LOG_LEVEL"

    env |= {"LUMIKU_LOG_LEVEL": "debug", "LUMIKU_AUTH_JWT_SECRET": "from-env"}
    settings = load(tmp_path, path, env)
    assert (settings.log.level, settings.auth.jwt_secret) == ("debug", "from-env")
    assert settings.sources["auth.jwt_secret"] == "env LUMIKU_AUTH_JWT_SECRET"

    env |= {"CREDENTIALS_DIRECTORY": str(credentials)}
    settings = load(tmp_path, path, env)
    assert (settings.log.level, settings.auth.jwt_secret) == ("debug", "from-credential")
    source = settings.sources["auth.jwt_secret"]
    assert source.startswith("credential")
    assert str(credentials / "auth.jwt_secret") in source


def test_sources_cover_every_setting(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"LUMIKU_HTTP_MAX_BODY_BYTES": "2048"})
    assert set(settings.sources) == set(SPECS_BY_KEY)
    assert settings.sources["http.max_body_bytes"] == "env LUMIKU_HTTP_MAX_BODY_BYTES"
    assert settings.sources["var_dir"] == "env LUMIKU_VAR_DIR"
    assert settings.sources["http.keep_alive_s"] == "default"


CREDENTIAL_CASES = [
    ("database.url", "postgresql://lumiku:pw@db.internal:5432/lumiku"),
    ("redis.url", "redis://:pw@cache.internal:6379/0"),
    ("auth.jwt_secret", STRONG_SECRET),
    ("metrics.token", "metrics-T0ken-4471"),
    ("duitku.api_key", "duitku-K3y-8812"),
    ("huggingface.api_key", "hf_Zx81kLmq"),
]


@pytest.mark.parametrize(("key", "text"), CREDENTIAL_CASES)
def test_a_credential_supplies_each_secret(tmp_path: Path, key: str, text: str) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / key).write_text(text + "\r\n", encoding="utf-8")
    settings = load(tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert values(settings)[key] == text
    assert settings.sources[key] == f"credential {credentials / key}"


def test_every_secret_setting_is_tested_as_a_credential() -> None:
    assert {key for key, _text in CREDENTIAL_CASES} == set(SECRET_KEYS)


def test_credentials_do_not_set_ordinary_settings(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "log.level").write_text("debug", encoding="utf-8")
    settings = load(tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.log.level == "info"


def test_bind_argument_beats_file_and_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[http]\nbind = "0.0.0.0:8000"\n')
    env = {"LUMIKU_HTTP_BIND": "0.0.0.0:9000", "PORT": "9100"}
    settings = load(tmp_path, path, env, bind="127.0.0.1:5000")
    assert settings.http.bind == "127.0.0.1:5000"
    assert settings.sources["http.bind"] == "command line --bind"


def test_bad_bind_argument_is_a_problem_naming_the_command_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, bind="nowhere")
    assert (problem.key, problem.source) == ("http.bind", "command line --bind")


def test_config_file_is_chosen_by_flag_then_env_then_default_path(tmp_path: Path) -> None:
    flag = write_toml(tmp_path, '[log]\nlevel = "warning"\n', "flag.toml")
    from_env = write_toml(tmp_path, '[log]\nlevel = "error"\n', "env.toml")
    default = write_toml(tmp_path, '[log]\nlevel = "debug"\n', "default.toml")
    var_dir = str(tmp_path / "var")

    def level(config_path: str | None, env: dict[str, str], default_path: str) -> str:
        environ = {"LUMIKU_VAR_DIR": var_dir, **env}
        return load_settings(config_path, environ=environ, default_path=default_path).log.level

    absent = str(tmp_path / "absent.toml")
    assert level(None, {}, absent) == "info"
    assert level(None, {}, default) == "debug"
    assert level(None, {"LUMIKU_CONFIG": from_env}, default) == "error"
    assert level(flag, {"LUMIKU_CONFIG": from_env}, default) == "warning"


# --- aliases ------------------------------------------------------------------------------

ALIAS_CASES = [
    ("DATABASE_URL", "postgresql://u:p@db:5432/lumiku", "database.url", None),
    ("REDIS_URL", "rediss://cache:6380/1", "redis.url", None),
    ("JWT_SECRET", STRONG_SECRET, "auth.jwt_secret", None),
    (
        "CORS_ORIGIN",
        "https://a.example.com, https://*.b.example.com",
        "http.cors_origins",
        ("https://a.example.com", "https://*.b.example.com"),
    ),
    ("LOG_LEVEL", "warning", "log.level", None),
    ("LOG_FORMAT", "json", "log.format", None),
    ("DUITKU_MERCHANT_CODE", "D1234", "duitku.merchant_code", None),
    ("DUITKU_API_KEY", "duitku-K3y-8812", "duitku.api_key", None),
    (
        "DUITKU_BASE_URL",
        "https://passport.duitku.com/webapi/api/merchant",
        "duitku.base_url",
        None,
    ),
    ("DUITKU_CALLBACK_URL", "https://api.lumiku.co.id/cb", "duitku.callback_url", None),
    ("DUITKU_RETURN_URL", "https://lumiku.co.id/paid", "duitku.return_url", None),
    ("HUGGINGFACE_API_KEY", "hf_Zx81kLmq", "huggingface.api_key", None),
]


@pytest.mark.parametrize(("name", "text", "key", "expected"), ALIAS_CASES)
def test_seed_alias_sets_its_setting(
    tmp_path: Path, name: str, text: str, key: str, expected: Any
) -> None:
    settings = load(tmp_path, env={name: text})
    assert values(settings)[key] == (text if expected is None else expected)
    assert settings.sources[key] == f"env {name}"


def test_every_alias_is_tested() -> None:
    assert {case[0] for case in ALIAS_CASES} == set(ALIASES)


def test_lumiku_name_beats_its_alias(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://alias@db/lumiku",
        "LUMIKU_DATABASE_URL": "postgresql://lumiku@db/lumiku",
    }
    assert load(tmp_path, env=env).database.url == "postgresql://lumiku@db/lumiku"


def test_redis_url_is_composed_from_parts_with_the_password_quoted(tmp_path: Path) -> None:
    password = "p@ss:w/rd#1"
    env = {"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380", "REDIS_PASSWORD": password}
    settings = load(tmp_path, env=env)
    parts = urlsplit(settings.redis.url)
    assert (parts.scheme, parts.hostname, parts.port) == ("redis", "cache.internal", 6380)
    assert parts.password is not None
    assert unquote(parts.password) == password
    assert password not in settings.redis.url
    assert "REDIS_HOST" in settings.sources["redis.url"]


def test_redis_host_alone_uses_port_6379_and_no_password(tmp_path: Path) -> None:
    parts = urlsplit(load(tmp_path, env={"REDIS_HOST": "cache"}).redis.url)
    assert (parts.hostname, parts.port, parts.password) == ("cache", 6379, None)


def test_redis_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    parts = urlsplit(load(tmp_path, env={"REDIS_HOST": "fd00::5"}).redis.url)
    assert (parts.hostname, parts.port) == ("fd00::5", 6379)


def test_redis_url_wins_over_redis_parts(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://primary:6379/2", "REDIS_HOST": "other"}
    assert load(tmp_path, env=env).redis.url == "redis://primary:6379/2"


@pytest.mark.parametrize(
    ("file_bind", "expected"),
    [
        (None, "127.0.0.1:9000"),
        ("0.0.0.0:8000", "0.0.0.0:9000"),
        ("[::]:8000", "[::]:9000"),
    ],
)
def test_port_alias_keeps_the_host_of_bind(
    tmp_path: Path, file_bind: str | None, expected: str
) -> None:
    path = write_toml(tmp_path, f'[http]\nbind = "{file_bind}"\n') if file_bind else None
    settings = load(tmp_path, path, {"PORT": "9000"})
    assert settings.http.bind == expected
    assert settings.sources["http.bind"] == "env PORT"


def test_bad_port_alias_is_a_problem_naming_port(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, env={"PORT": "http"})
    assert (problem.key, problem.source) == ("http.bind", "env PORT")


# --- coercion of environment strings ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("LUMIKU_HTTP_MAX_BODY_BYTES", "2048", 2048),
        ("LUMIKU_HTTP_MAX_BODY_BYTES", " 4096 ", 4096),
        ("LUMIKU_SHUTDOWN_GRACE_S", "7.5", 7.5),
        ("LUMIKU_SHUTDOWN_GRACE_S", "10", 10.0),
        (
            "LUMIKU_HTTP_TRUSTED_PROXIES",
            "10.0.0.0/8, 192.168.0.0/16",
            ("10.0.0.0/8", "192.168.0.0/16"),
        ),
        ("LUMIKU_HTTP_TRUSTED_PROXIES", '["10.0.0.0/8", "::1"]', ("10.0.0.0/8", "::1")),
        ("LUMIKU_HTTP_TRUSTED_PROXIES", "", ()),
        ("LUMIKU_HTTP_CORS_ORIGINS", "https://a.example.com,", ("https://a.example.com",)),
    ],
)
def test_environment_strings_are_coerced(
    tmp_path: Path, name: str, text: str, expected: Any
) -> None:
    value = values(load(tmp_path, env={name: text}))[ENV_NAMES[name]]
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("TRUE", True),
        (" Off ", False),
    ],
)
def test_booleans_from_the_environment(tmp_path: Path, text: str, expected: bool) -> None:
    settings = load(tmp_path, env={"LUMIKU_DATABASE_AUTO_MIGRATE": text})
    assert settings.database.auto_migrate is expected


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("LUMIKU_HTTP_MAX_BODY_BYTES", "lots"),
        ("LUMIKU_HTTP_MAX_BODY_BYTES", "1.5"),
        ("LUMIKU_HTTP_MAX_BODY_BYTES", "0"),
        ("LUMIKU_HTTP_KEEP_ALIVE_S", "fast"),
        ("LUMIKU_SHUTDOWN_GRACE_S", "-1"),
        ("LUMIKU_DATABASE_AUTO_MIGRATE", "maybe"),
        ("LUMIKU_DATABASE_AUTO_MIGRATE", ""),
        ("LUMIKU_HTTP_TRUSTED_PROXIES", '["10.0.0.0/8", 1]'),
        ("LUMIKU_HTTP_TRUSTED_PROXIES", "[not json"),
        ("LUMIKU_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network"),
        ("LUMIKU_HTTP_CORS_ORIGINS", "example.com"),
        ("LUMIKU_LOG_LEVEL", "loud"),
        ("LUMIKU_ENVIRONMENT", "staging"),
        ("LUMIKU_DATABASE_URL", "mysql://db/lumiku"),
        ("LUMIKU_REDIS_URL", "http://cache:6379"),
        ("LUMIKU_METRICS_BIND", "internal"),
    ],
)
def test_bad_environment_value_is_one_problem_naming_key_and_variable(
    tmp_path: Path, name: str, text: str
) -> None:
    [problem] = problems(tmp_path, env={name: text})
    assert (problem.key, problem.source) == (ENV_NAMES[name], f"env {name}")
    assert problem.message


def test_deeply_nested_json_list_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # json.loads raises RecursionError (not ValueError) past ~1000 levels of nesting.
    [problem] = problems(tmp_path, env={"LUMIKU_HTTP_TRUSTED_PROXIES": "[" * 5000})
    assert problem.key == "http.trusted_proxies"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("[http]\nmax_body_bytes = 1.5", "http.max_body_bytes"),
        ("[http]\nmax_body_bytes = true", "http.max_body_bytes"),
        ("[http]\nbind = 8000", "http.bind"),
        ("[http]\ncors_origins = [1, 2]", "http.cors_origins"),
        ("[database]\nauto_migrate = 1", "database.auto_migrate"),
    ],
)
def test_wrong_toml_types_are_problems(tmp_path: Path, line: str, key: str) -> None:
    path = write_toml(tmp_path, line + "\n")
    [problem] = problems(tmp_path, path)
    assert (problem.key, problem.source) == (key, f"file {path}")


def test_toml_integer_is_accepted_where_a_float_is_wanted(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[shutdown]\ngrace_s = 0x10\n")
    grace_s = load(tmp_path, path).shutdown.grace_s
    assert (grace_s, type(grace_s)) == (16.0, float)


@pytest.fixture(scope="module")
def fuzz_var_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fuzz") / "var")


FUZZED_NAMES = sorted(
    ({*ENV_NAMES} - {"LUMIKU_VAR_DIR", "LUMIKU_ENVIRONMENT"})
    | {*ALIASES, "PORT", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"}
)


@given(
    env=st.dictionaries(
        st.sampled_from(FUZZED_NAMES),
        st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30),
        max_size=5,
    )
)
def test_any_environment_gives_settings_or_config_error(
    fuzz_var_dir: str, env: dict[str, str]
) -> None:
    environ = {"LUMIKU_VAR_DIR": fuzz_var_dir, **env}
    found: tuple[ConfigProblem, ...] = ()
    try:
        load_settings(None, environ=environ, default_path=fuzz_var_dir + "/absent.toml")
    except ConfigError as exc:
        found = exc.problems
        assert found, "a ConfigError lists at least one problem"
    assert all(p.key and p.source and p.message for p in found)


# --- every problem at once ----------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        environment = "staging"
        [http]
        max_body_bytes = "big"
        colour = "blue"
        """,
    )
    env = {"LUMIKU_DATABASE_POOL_MAX_SIZE": "many", "LUMIKU_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, path, env)
    found = info.value.problems
    assert len(found) == 5
    assert {(p.key, p.source) for p in found} == {
        ("environment", f"file {path}"),
        ("http.max_body_bytes", f"file {path}"),
        ("http.colour", f"file {path}"),
        ("database.pool_max_size", "env LUMIKU_DATABASE_POOL_MAX_SIZE"),
        ("log.level", "env LUMIKU_LOG_LEVEL"),
    }
    assert all(p.message for p in found)
    assert all(str(p) in str(info.value) for p in found)


def test_unknown_toml_keys_and_sections_are_problems(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        debug = true
        http = 5
        [nosuch]
        key = 1
        [log]
        colour = "blue"
        """,
    )
    found = {p.key: p.message for p in problems(tmp_path, path)}
    assert set(found) == {"debug", "http", "nosuch", "log.colour"}
    assert "unknown" in found["debug"]
    assert "table" in found["http"]


def test_unknown_lumiku_variable_is_a_problem(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, env={"LUMIKU_FOO": "1"})
    assert (problem.key, problem.source) == ("LUMIKU_FOO", "env LUMIKU_FOO")


KUBERNETES_LINKS = {
    # a Service `lumiku` with one port named http
    "LUMIKU_SERVICE_HOST": "10.96.0.9",
    "LUMIKU_SERVICE_PORT": "8000",
    "LUMIKU_SERVICE_PORT_HTTP": "8000",
    "LUMIKU_PORT": "tcp://10.96.0.9:8000",
    "LUMIKU_PORT_8000_TCP": "tcp://10.96.0.9:8000",
    "LUMIKU_PORT_8000_TCP_PROTO": "tcp",
    "LUMIKU_PORT_8000_TCP_PORT": "8000",
    "LUMIKU_PORT_8000_TCP_ADDR": "10.96.0.9",
    # a Service `lumiku-redis-master` on an IPv6 cluster
    "LUMIKU_REDIS_MASTER_SERVICE_HOST": "fd00:10:96::a",
    "LUMIKU_REDIS_MASTER_PORT": "tcp://[fd00:10:96::a]:6379",
    "LUMIKU_REDIS_MASTER_PORT_6379_TCP_ADDR": "fd00:10:96::a",
}


def test_kubernetes_service_links_are_ignored_and_recorded(tmp_path: Path) -> None:
    settings = load(tmp_path, env=KUBERNETES_LINKS)
    assert settings == load(tmp_path)
    assert settings.service_links == tuple(sorted(KUBERNETES_LINKS))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LUMIKU_DATABSE_URL", "postgresql://x@y/z"),  # a typo
        ("LUMIKU_PORT", "8000"),  # meant PORT: a link's value is tcp://ip:port
        ("LUMIKU_SERVICE_HOST", "lumiku.example.com"),  # a link's host is an IP
        ("LUMIKU_SERVICE_PORT", "http"),
        ("LUMIKU_PORT_8000_TCP_PROTO", "http"),
        ("LUMIKU_PORTS", "tcp://10.96.0.9:8000"),
        ("LUMIKU_HTTP_PORT", "8000"),
    ],
)
def test_other_unknown_lumiku_variables_stay_problems_beside_service_links(
    tmp_path: Path, name: str, value: str
) -> None:
    [problem] = problems(tmp_path, env={**KUBERNETES_LINKS, name: value})
    assert (problem.key, problem.source) == (name, f"env {name}")
    assert "unknown" in problem.message


def test_no_setting_reads_as_a_link_of_the_lumiku_service() -> None:
    """Otherwise the Service `lumiku` itself would set it in every pod. (A Service named
    after a setting's own words could still: `lumiku-http-reuse` sets LUMIKU_HTTP_REUSE_PORT
    to tcp://…, which the setting, looked up first, refuses loudly as not a boolean.)"""
    for name in ENV_NAMES:
        assert not name.startswith(("LUMIKU_PORT", "LUMIKU_SERVICE_")), name


def test_a_setting_named_like_a_service_link_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(config.ENV_NAMES, "LUMIKU_SERVICE_PORT", "http.keep_alive_s")
    settings = load(tmp_path, env={"LUMIKU_SERVICE_PORT": "8000"})
    assert settings.http.keep_alive_s == 8000
    assert settings.sources["http.keep_alive_s"] == "env LUMIKU_SERVICE_PORT"
    assert settings.service_links == ()


def test_lumiku_variables_that_are_not_settings_are_ignored(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "")
    env = {
        "LUMIKU_CONFIG": path,
        "LUMIKU_REQUIRE_SERVICES": "postgres,redis",
        "LUMIKU_TEST_DATABASE_URL": "postgresql://x@y/z",
        "LUMIKU_BENCH_SECONDS": "5",
        "HOME": "/root",
        "DATABASE": "unrelated",
    }
    assert load(tmp_path, env=env) == load(tmp_path)


def test_missing_config_file_is_a_problem(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    found = problems(tmp_path, missing, {"LUMIKU_LOG_LEVEL": "loud"})
    assert [(p.key, p.source) for p in found] == [
        ("--config", f"file {missing}"),
        ("log.level", "env LUMIKU_LOG_LEVEL"),
    ]
    assert "not found" in found[0].message


def test_missing_file_named_by_lumiku_config_is_a_problem(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    [problem] = problems(tmp_path, env={"LUMIKU_CONFIG": missing})
    assert (problem.key, problem.source) == ("--config", f"file {missing}")


@pytest.mark.parametrize("text", ["[http\nbind = '1'", "bind = ", "a = 1\na = 2", "x = \xff"])
def test_malformed_toml_is_a_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1"))
    [problem] = problems(tmp_path, str(path))
    assert (problem.key, problem.source) == ("--config", f"file {path}")


def test_config_path_that_is_a_directory_is_a_problem(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, str(tmp_path))
    assert problem.key == "--config"


# --- production ---------------------------------------------------------------------------


def test_weak_production_config_names_every_failing_key(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        environment = "production"
        [http]
        cors_origins = ["*"]
        [database]
        url = "sqlite:///var/lib/lumiku/lumiku.db"
        [redis]
        url = "redis://cache.internal:6379/0"
        [auth]
        jwt_secret = "secret"
        [metrics]
        token = "metrics-T0ken-4471"
        """,
    )
    found = problems(tmp_path, path)
    assert {p.key for p in found} == {"auth.jwt_secret", "database.url", "http.cors_origins"}
    assert {p.source for p in found} == {f"file {path}"}
    assert not (tmp_path / "var" / "jwt.secret").exists()


def test_good_production_config_loads(tmp_path: Path) -> None:
    settings = load(tmp_path, env=production_env())
    assert settings.is_production
    assert settings.auth.jwt_secret == STRONG_SECRET
    assert not (tmp_path / "var" / "jwt.secret").exists()


def test_production_requires_postgres_and_redis_even_by_default(tmp_path: Path) -> None:
    env = production_env(LUMIKU_DATABASE_URL=None, LUMIKU_REDIS_URL=None)
    found = problems(tmp_path, env=env)
    assert {(p.key, p.source) for p in found} == {
        ("database.url", "default"),
        ("redis.url", "default"),
    }


def test_production_with_malformed_database_url_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    env = production_env(LUMIKU_DATABASE_URL="postgresql://[broken")
    found = problems(tmp_path, env=env)
    assert {p.key for p in found} == {"database.url"}


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("", "at least 32"),
        ("Sh0rt-but-mixed!", "at least 32"),
        ("change-this-to-a-long-random-value-0123456789XYZ", "placeholder"),
        ("your-secret-key-goes-here-1234567890", "placeholder"),
        ("x" * 40, "repeated"),
        ("abcdefghijABCDEFGHIJklmnopqrstKLMNOPQRST", "letters only"),
        ("1234567890" * 4, "digits only"),
        ("ab12" * 10, "entropy"),
    ],
)
def test_production_refuses_weak_jwt_secrets(tmp_path: Path, secret: str, fragment: str) -> None:
    found = problems(tmp_path, env=production_env(LUMIKU_AUTH_JWT_SECRET=secret))
    assert {(p.key, p.source) for p in found} == {("auth.jwt_secret", "env LUMIKU_AUTH_JWT_SECRET")}
    assert any(fragment in p.message for p in found), [p.message for p in found]


@pytest.mark.parametrize(
    "origins",
    ["https://app.lumiku.co.id", "https://*.lumiku.co.id", "https://app.lumiku.co.id:8443"],
)
def test_production_accepts_https_origins(tmp_path: Path, origins: str) -> None:
    env = production_env(LUMIKU_HTTP_CORS_ORIGINS=origins)
    assert load(tmp_path, env=env).http.cors_origins == (origins,)


@pytest.mark.parametrize(
    "origins",
    ["http://app.lumiku.co.id", "https://app.lumiku.co.id,http://localhost:3000", "*"],
)
def test_production_refuses_http_and_star_origins(tmp_path: Path, origins: str) -> None:
    found = problems(tmp_path, env=production_env(LUMIKU_HTTP_CORS_ORIGINS=origins))
    assert {(p.key, p.source) for p in found} == {
        ("http.cors_origins", "env LUMIKU_HTTP_CORS_ORIGINS")
    }


def test_development_accepts_any_wellformed_origin(tmp_path: Path) -> None:
    env = {"LUMIKU_HTTP_CORS_ORIGINS": "*,http://localhost:3000"}
    assert load(tmp_path, env=env).http.cors_origins == ("*", "http://localhost:3000")


@pytest.mark.parametrize(("token", "bind"), [("metrics-T0ken-4471", ""), ("", "10.0.0.5:9100")])
def test_production_accepts_metrics_token_or_bind(tmp_path: Path, token: str, bind: str) -> None:
    env = production_env(LUMIKU_METRICS_TOKEN=token, LUMIKU_METRICS_BIND=bind)
    assert load(tmp_path, env=env).is_production


def test_production_requires_metrics_token_or_bind(tmp_path: Path) -> None:
    env = production_env(LUMIKU_METRICS_TOKEN="", LUMIKU_METRICS_BIND="")
    assert {p.key for p in problems(tmp_path, env=env)} == {"metrics.token"}


def payments_env(**overrides: str | None) -> dict[str, str]:
    payments: dict[str, str | None] = {
        "LUMIKU_PAYMENTS_ENABLED": "true",
        "LUMIKU_DUITKU_MERCHANT_CODE": "D9876",
        "LUMIKU_DUITKU_API_KEY": "dk-9f8e7d6c5b4a",
        "LUMIKU_DUITKU_BASE_URL": "https://passport.duitku.com/webapi/api/merchant",
        "LUMIKU_DUITKU_CALLBACK_URL": "https://api.lumiku.co.id/api/payment/duitku/callback",
        "LUMIKU_DUITKU_RETURN_URL": "https://lumiku.co.id/payment/done",
        "LUMIKU_DUITKU_IP_ALLOWLIST": "182.23.85.0/24",
    }
    return production_env(**{**payments, **overrides})


def test_production_with_real_payment_settings_loads(tmp_path: Path) -> None:
    assert load(tmp_path, env=payments_env()).payments.enabled


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("LUMIKU_DUITKU_BASE_URL", None, "duitku.base_url"),
        ("LUMIKU_DUITKU_BASE_URL", "https://sandbox.duitku.com/api", "duitku.base_url"),
        ("LUMIKU_DUITKU_MERCHANT_CODE", "TESTMERCHANT", "duitku.merchant_code"),
        ("LUMIKU_DUITKU_MERCHANT_CODE", "", "duitku.merchant_code"),
        ("LUMIKU_DUITKU_API_KEY", "sandbox-key-123", "duitku.api_key"),
        ("LUMIKU_DUITKU_API_KEY", "", "duitku.api_key"),
        ("LUMIKU_DUITKU_CALLBACK_URL", "http://api.lumiku.co.id/cb", "duitku.callback_url"),
        ("LUMIKU_DUITKU_CALLBACK_URL", "https://example.com/cb", "duitku.callback_url"),
        ("LUMIKU_DUITKU_RETURN_URL", "http://lumiku.co.id/done", "duitku.return_url"),
        ("LUMIKU_DUITKU_IP_ALLOWLIST", "", "duitku.ip_allowlist"),
    ],
)
def test_production_refuses_unreal_payment_settings(
    tmp_path: Path, name: str, text: str | None, key: str
) -> None:
    env = payments_env(**{name: text})
    assert {p.key for p in problems(tmp_path, env=env)} == {key}


def test_sandbox_payment_settings_are_fine_while_payments_are_off(tmp_path: Path) -> None:
    env = payments_env(LUMIKU_PAYMENTS_ENABLED="false", LUMIKU_DUITKU_BASE_URL=None)
    assert not load(tmp_path, env=env).payments.enabled


def test_production_example_holds_no_secrets() -> None:
    flat = flatten(tomllib.loads(PRODUCTION.read_text(encoding="utf-8")))
    assert flat["environment"] == "production"
    for key in SECRET_KEYS:
        value = flat.get(key, "")
        assert value == "" or urlsplit(value).password is None, key


def test_production_example_loads_once_secrets_are_supplied(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "metrics.token").write_text("metrics-T0ken-4471\n", encoding="utf-8")
    env = {"LUMIKU_AUTH_JWT_SECRET": STRONG_SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}
    settings = load(tmp_path, str(PRODUCTION), env)
    assert settings.is_production
    assert urlsplit(settings.database.url).scheme == "postgresql"
    assert settings.redis.url


def test_production_example_without_secrets_names_only_the_secrets(tmp_path: Path) -> None:
    found = problems(tmp_path, str(PRODUCTION))
    assert {p.key for p in found} == {"auth.jwt_secret", "metrics.token"}


# --- development defaults -----------------------------------------------------------------


def test_development_generates_a_jwt_secret_once_and_keeps_it(tmp_path: Path) -> None:
    first = load(tmp_path)
    path = tmp_path / "var" / "jwt.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").strip() == first.auth.jwt_secret
    assert len(first.auth.jwt_secret) >= 32
    assert first.sources["auth.jwt_secret"] == f"generated {path}"
    assert load(tmp_path).auth.jwt_secret == first.auth.jwt_secret


def test_development_reuses_an_existing_secret_file(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jwt.secret").write_text("kept-from-last-run\n", encoding="utf-8")
    assert load(tmp_path).auth.jwt_secret == "kept-from-last-run"


def test_configured_jwt_secret_writes_no_file(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"JWT_SECRET": STRONG_SECRET})
    assert settings.auth.jwt_secret == STRONG_SECRET
    assert not (tmp_path / "var" / "jwt.secret").exists()


def test_unwritable_var_dir_is_a_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    [problem] = problems(tmp_path, env={"LUMIKU_VAR_DIR": str(blocker)})
    assert problem.key == "auth.jwt_secret"


def test_embedded_defaults_live_under_var_dir(tmp_path: Path) -> None:
    settings = load(tmp_path)
    var_dir = tmp_path / "var"
    assert settings.database.url == f"sqlite:///{var_dir}/lumiku.db"
    assert settings.storage.path == f"{var_dir}/files"
    assert settings.http.bind == "127.0.0.1:8000"
    assert settings.environment == "development"
    assert not settings.redis.url


def test_explicit_database_url_and_storage_path_are_kept(tmp_path: Path) -> None:
    env = {
        "LUMIKU_DATABASE_URL": "sqlite:///srv/other.db",
        "LUMIKU_STORAGE_PATH": "/srv/files",
    }
    settings = load(tmp_path, env=env)
    assert (settings.database.url, settings.storage.path) == (
        "sqlite:///srv/other.db",
        "/srv/files",
    )


# --- redaction ----------------------------------------------------------------------------

SECRET_ENV = {
    "LUMIKU_AUTH_JWT_SECRET": STRONG_SECRET,
    "LUMIKU_METRICS_TOKEN": "metrics-T0ken-4471",
    "LUMIKU_DUITKU_API_KEY": "duitku-K3y-8812",
    "LUMIKU_HUGGINGFACE_API_KEY": "hf_Zx81kLmq",
    "LUMIKU_DATABASE_URL": "postgresql://lumiku:db-Pa55word@db.internal:5432/lumiku",
    "LUMIKU_REDIS_URL": "redis://:redis-Pa55word@cache.internal:6379/0",
}
SECRET_TEXTS = [
    STRONG_SECRET,
    "metrics-T0ken-4471",
    "duitku-K3y-8812",
    "hf_Zx81kLmq",
    "db-Pa55word",
    "redis-Pa55word",
]


def test_redacted_hides_every_secret_and_shows_the_rest(tmp_path: Path) -> None:
    env = {**SECRET_ENV, "LUMIKU_LOG_LEVEL": "warning", "LUMIKU_HTTP_BIND": "0.0.0.0:8123"}
    rows = redacted(load(tmp_path, env=env))
    text = repr(rows)
    for secret in SECRET_TEXTS:
        assert secret not in text
    assert [key for key, _value, _source in rows] == [spec.key for spec in SPECS]
    shown = {key: (value, source) for key, value, source in rows}
    assert shown["log.level"] == ("warning", "env LUMIKU_LOG_LEVEL")
    assert shown["http.bind"] == ("0.0.0.0:8123", "env LUMIKU_HTTP_BIND")
    assert shown["duitku.base_url"][0] == config.DuitkuSettings().base_url
    for key, host in (("database.url", "db.internal"), ("redis.url", "cache.internal")):
        url = shown[key][0]
        assert urlsplit(url).hostname == host
        assert urlsplit(url).password == "***"


def test_redacted_hides_a_url_quoted_password(tmp_path: Path) -> None:
    env = {"REDIS_HOST": "cache", "REDIS_PASSWORD": "p@ss:w/rd#1"}
    settings = load(tmp_path, env=env)
    text = repr(redacted(settings))
    quoted = urlsplit(settings.redis.url).password
    assert quoted is not None
    assert "p@ss:w/rd#1" not in text
    assert quoted not in text


@pytest.mark.parametrize(
    ("name", "text", "secret"),
    [
        (
            "LUMIKU_DATABASE_URL",
            "postgresql://lumiku@db.internal/lumiku?password=hunter2-Xy",
            "hunter2-Xy",
        ),
        ("LUMIKU_METRICS_TOKEN", "tok://Zq81-metrics", "Zq81-metrics"),
    ],
)
def test_redacted_never_shows_a_secret_in_any_shape(
    tmp_path: Path, name: str, text: str, secret: str
) -> None:
    rows = redacted(load(tmp_path, env={name: text}))
    assert secret not in repr(rows)


def test_redacted_leaves_empty_secrets_empty(tmp_path: Path) -> None:
    shown = {key: value for key, value, _source in redacted(load(tmp_path))}
    assert shown["metrics.token"] == ""
    assert shown["database.url"].startswith("sqlite:///")


def test_secret_values_include_jwt_secret_tokens_and_url_passwords(tmp_path: Path) -> None:
    found = load(tmp_path, env=SECRET_ENV).secret_values()
    for secret in SECRET_TEXTS:
        assert secret in found


def test_secret_values_include_the_generated_jwt_secret(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.auth.jwt_secret in settings.secret_values()


def test_secret_values_include_the_real_password_not_only_its_url_quoting(tmp_path: Path) -> None:
    env = {"REDIS_HOST": "cache", "REDIS_PASSWORD": "p@ss:w/rd#1"}
    assert "p@ss:w/rd#1" in load(tmp_path, env=env).secret_values()


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        ("[payments]\npackages = []\n", "payments.packages", "needs at least one package"),
        (
            '[payments]\npackages = ["x:1"]\n',
            "payments.packages",
            "'x:1' is not id:credits:price_idr",
        ),
        (
            '[payments]\npackages = ["a:1:99"]\n',
            "payments.packages",
            "'a:1:99': price_idr must be an integer of at least 10000",
        ),
        (
            '[payments]\npackages = ["a:1:15000", "a:2:20000"]\n',
            "payments.packages",
            "package id 'a' appears twice",
        ),
        (
            '[payments]\ndefault_method = "qris!"\n',
            "payments.default_method",
            "'qris!' is not a Duitku payment method code (1-4 letters or digits)",
        ),
        ('[flags]\nvalues = ["a"]\n', "flags.values", "'a' is not name=value"),
        (
            '[flags]\nvalues = ["Big=on"]\n',
            "flags.values",
            "'Big' is not a flag name (lower-case a-z, 0-9, '_', '.', '-')",
        ),
        (
            '[flags]\nvalues = ["a=lots"]\n',
            "flags.values",
            "'lots' is not on, off or a percentage from 0 to 100",
        ),
    ],
)
def test_domain_values_are_checked_with_the_domains_own_messages(
    tmp_path: Path, toml: str, key: str, message: str
) -> None:
    """Packages, the payment method and flag entries are parsed by the one parser their
    domain uses too; config reports its messages under the key."""
    found = problems(tmp_path, write_toml(tmp_path, toml))
    assert [(p.key, p.message) for p in found] == [(key, message)]


def test_app_rate_limit_rules_are_set_per_app_and_checked(tmp_path: Path) -> None:
    env = {
        "LUMIKU_RATELIMIT_APPS": "pose-generator.generate=3/1m,avatar-creator.upload=2/1h",
        "LUMIKU_RATELIMIT_GENERATE": "7/1m",  # the shared key of before still parses
    }
    settings = load(tmp_path, env=env)
    assert settings.ratelimit.apps == ("pose-generator.generate=3/1m", "avatar-creator.upload=2/1h")
    assert settings.ratelimit.generate == "7/1m"
    bad = {
        "LUMIKU_RATELIMIT_APPS": "generate=3/1m,pose-generator.generate=often",
        "LUMIKU_RATELIMIT_UPLOAD": "lots",
        "LUMIKU_RATELIMIT_FAIL_CLOSED": "login,Pose.generate",
    }
    found = {(p.key, p.message.split(",")[0]) for p in problems(tmp_path, env=bad)}
    assert {key for key, _ in found} == {
        "ratelimit.apps",
        "ratelimit.upload",
        "ratelimit.fail_closed",
    }
    assert len([key for key, _ in found if key == "ratelimit.apps"]) == 2
