"""Real-service fixtures (a pytest plugin, loaded by the root conftest's `pytest_plugins`).

PostgreSQL and Redis come from `LUMIKU_TEST_DATABASE_URL` / `LUMIKU_TEST_REDIS_URL`
(defaults: the local servers). A session fixture creates one template database migrated
with the real migrations; every test that asks for `postgres_url` gets its own
`CREATE DATABASE … TEMPLATE` copy (real commits), dropped afterwards. When a service is
unreachable its tests are skipped and one loud line closes the session, unless
`LUMIKU_REQUIRE_SERVICES=1`, which makes them fail instead.

Fixtures: `postgres_admin_url` (session), `postgres_url`, `postgres_empty_url`,
`sqlite_url`, `redis_url`, `database_url` and `empty_database_url` (parametrized
sqlite/postgres), `store` (an opened, migrated Store on each backend). Helpers:
`settings_for()`, `open_test_store()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest
import trio
import trio_asyncio

from lumiku.config import Settings, load_settings, redact_url
from lumiku.db.migrate import DEFAULT_SOURCES, MigrationSource
from lumiku.db.store import Store, open_store
from lumiku.testing import TcpProxy

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CONNECT_TIMEOUT_S = 3.0
BACKENDS = ("sqlite", "postgres")

# service → [reason, number of tests it stopped]
_MISSING: dict[str, list[Any]] = {}


def _services_required() -> bool:
    return os.environ.get("LUMIKU_REQUIRE_SERVICES") == "1"


def _unavailable(service: str, reason: str) -> NoReturn:
    entry = _MISSING.setdefault(service, [reason, 0])
    entry[1] += 1
    if _services_required():
        pytest.fail(f"{service} unavailable ({reason}) and LUMIKU_REQUIRE_SERVICES=1")
    pytest.skip(f"{service} unavailable: {reason}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    """After the short summary, just above the final counts: one line per missing service."""
    yield
    for service, (reason, count) in _MISSING.items():
        if _services_required():
            text = f"{count} test(s) FAILED: {service} unavailable ({reason})"
        else:
            text = (
                f"{count} test(s) SKIPPED: {service} unavailable ({reason}); "
                "LUMIKU_REQUIRE_SERVICES=1 makes this a failure"
            )
        terminalreporter.write_sep("!", text, red=True, bold=True)


def settings_for(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: `database_url`, state under `tmp_path`, no config file.

    `overrides` name settings with `_` for `.`: `database_pool_max_size=2`.
    """
    environ = {
        "LUMIKU_ENVIRONMENT": "test",
        "LUMIKU_VAR_DIR": str(tmp_path / "var"),
        "LUMIKU_DATABASE_URL": database_url,
    }
    for key, value in overrides.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        environ[f"LUMIKU_{key.upper()}"] = text
    return load_settings(environ=environ, default_path=str(tmp_path / "no-such-config.toml"))


@contextlib.asynccontextmanager
async def open_test_store(
    database_url: str,
    tmp_path: Path,
    *,
    migrations: Sequence[MigrationSource] = DEFAULT_SOURCES,
    **overrides: Any,
) -> AsyncIterator[Store]:
    """`open_store` for a test, inside a trio-asyncio loop when the URL is PostgreSQL.

    trio-asyncio's loop is a nursery, so an error leaving it arrives wrapped in an exception
    group; a lone error is unwrapped here so tests can `pytest.raises` it on both backends.
    """
    settings = settings_for(database_url, tmp_path, **overrides)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if database_url.startswith("postgres"):
                await stack.enter_async_context(trio_asyncio.open_loop())
            yield await stack.enter_async_context(open_store(settings, migrations=migrations))
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [
        leaf
        for exc in group.exceptions
        for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    ]


# --- PostgreSQL -------------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin(url: str, *statements: str) -> None:
    """Run statements on the server with a throwaway asyncio loop (outside any trio run)."""

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    # An explicit loop factory: trio-asyncio's policy would otherwise supply its own loop.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(run())


def _create_database(admin_url: str, name: str, template: str) -> str:
    _admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop_database(admin_url: str, name: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str, tmp_path: Path) -> None:
    async with open_test_store(url, tmp_path) as store:
        await store.migrate()


class _Databases:
    """Copies of the template, created a few ahead in threads (a copy takes ~0.3 s of
    fsync-bound server time; two at once take little longer than one) and dropped in the
    background."""

    AHEAD = 2

    def __init__(self, admin_url: str, template: str) -> None:
        self._admin_url = admin_url
        self._template = template
        self._pool = ThreadPoolExecutor(max_workers=self.AHEAD, thread_name_prefix="test-db")
        self._coming: deque[Future[str]] = deque()
        self._dropping: list[Future[None]] = []

    def _submit(self) -> None:
        name = f"lumiku_test_{uuid.uuid4().hex[:12]}"
        self._coming.append(
            self._pool.submit(_create_database, self._admin_url, name, self._template)
        )

    def take(self) -> str:
        while len(self._coming) <= self.AHEAD:
            self._submit()
        return self._coming.popleft().result()

    def give_back(self, name: str) -> None:
        self._dropping.append(self._pool.submit(_drop_database, self._admin_url, name))

    def close(self) -> None:
        names = []
        for future in self._coming:
            with contextlib.suppress(Exception):
                names.append(future.result())
        for name in names:
            self.give_back(name)
        for dropping in self._dropping:
            dropping.result()
        self._pool.shutdown()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL server URL (its maintenance database)."""
    return os.environ.get("LUMIKU_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)


@pytest.fixture(scope="session")
def _postgres_databases(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Databases | Exception]:
    """Copies of a template migrated with the real migrations, or why the server is
    unreachable."""
    try:
        _admin(postgres_admin_url, "SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        yield exc
        return
    template = _create_database(
        postgres_admin_url, f"lumiku_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}", "template0"
    )
    databases = None
    try:
        trio.run(
            _migrate,
            _with_database(postgres_admin_url, template),
            tmp_path_factory.mktemp("template"),
        )
        databases = _Databases(postgres_admin_url, template)
        yield databases
    finally:
        if databases is not None:
            databases.close()
        _drop_database(postgres_admin_url, template)


def _available(admin_url: str, databases: _Databases | Exception) -> _Databases:
    if isinstance(databases, Exception):
        _unavailable("PostgreSQL", f"{redact_url(admin_url)}: {databases}")
    return databases


@pytest.fixture
def postgres_url(
    postgres_admin_url: str, _postgres_databases: _Databases | Exception
) -> Iterator[str]:
    """URL of a fresh database of its own, migrated with the real migrations."""
    databases = _available(postgres_admin_url, _postgres_databases)
    name = databases.take()
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        databases.give_back(name)


@pytest.fixture
def postgres_empty_url(
    postgres_admin_url: str, _postgres_databases: _Databases | Exception
) -> Iterator[str]:
    """URL of a fresh, empty database (no migrations applied)."""
    _available(postgres_admin_url, _postgres_databases)
    name = _create_database(
        postgres_admin_url, f"lumiku_empty_{uuid.uuid4().hex[:12]}", "template0"
    )
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        _drop_database(postgres_admin_url, name)


# --- SQLite and both backends -----------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a not yet existing SQLite file under tmp_path."""
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """`sqlite_url`, then `postgres_url` (migrated): runs a test on both backends."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_empty_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened Store with the real migrations applied, on SQLite and on PostgreSQL."""
    async with open_test_store(database_url, tmp_path) as opened:
        await opened.migrate()
        yield opened


# --- Redis ------------------------------------------------------------------------------


def _redis_call(url: str, *commands: Sequence[str]) -> None:
    """Send RESP commands; raise OSError when a reply is an error."""
    parts = urlsplit(url)
    with socket.create_connection(
        (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=CONNECT_TIMEOUT_S
    ) as raw:
        sock = (
            ssl.create_default_context().wrap_socket(raw, server_hostname=parts.hostname)
            if parts.scheme == "rediss"
            else raw
        )
        reader = sock.makefile("rb")
        auth = [unquote(p) for p in (parts.username, parts.password) if p]
        database = parts.path.strip("/") or "0"
        for command in ([["AUTH", *auth]] if auth else []) + [["SELECT", database], *commands]:
            payload = f"*{len(command)}\r\n" + "".join(
                f"${len(arg.encode())}\r\n{arg}\r\n" for arg in command
            )
            sock.sendall(payload.encode())
            reply = reader.readline()
            if not reply.startswith(b"+"):
                raise OSError(f"{command[0]}: {reply.decode(errors='replace').strip()}")


@pytest.fixture(scope="session")
def _redis_problem() -> str | None:
    url = os.environ.get("LUMIKU_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        _redis_call(url)
    except OSError as exc:
        return f"{redact_url(url)}: {exc}"
    return None


@pytest.fixture
def redis_url(_redis_problem: str | None) -> str:
    """The test Redis URL, its database just emptied with FLUSHDB."""
    if _redis_problem is not None:
        _unavailable("Redis", _redis_problem)
    url = os.environ.get("LUMIKU_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    _redis_call(url, ["FLUSHDB"])
    return url


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A TcpProxy in front of the test Redis, and the Redis URL that goes through it, so a
    test can take Redis away (`proxy.take_down()` resets, `proxy.drop()` goes silent) and
    bring it back (`proxy.bring_up()`) without touching it."""
    redis = urlsplit(redis_url)
    assert redis.hostname is not None
    proxy = TcpProxy(redis.hostname, redis.port or 6379)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        yield proxy, f"redis://127.0.0.1:{port}{redis.path or '/0'}"
        nursery.cancel_scope.cancel()


@pytest.fixture
async def postgres_proxy(postgres_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A TcpProxy in front of the test PostgreSQL, and the URL of the test's own database
    through it, so a test can cut PostgreSQL (`take_down()` resets, `drop()` goes silent)
    and restore it (`bring_up()`) without touching the server."""
    url = urlsplit(postgres_url)
    assert url.hostname is not None
    proxy = TcpProxy(url.hostname, url.port or 5432)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        netloc = f"{url.username}@127.0.0.1:{port}" if url.username else f"127.0.0.1:{port}"
        yield proxy, url._replace(netloc=netloc).geturl()
        nursery.cancel_scope.cancel()
