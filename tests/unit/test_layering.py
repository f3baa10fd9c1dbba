"""DESIGN's ownership rules, checked on the source.

Drivers: who may import which driver, and only config reads the environment. Internal
rules (DESIGN "Layout", SPEC §17): the core never imports an app (so `jobs` does not import
`apps`), config imports no domain code, routes never touch the Store, and no app's queries
use another app's tables. Each rule's checker is shown failing on a planted violation
below.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lumiku"

# module imported -> the only files (relative to lumiku/) allowed to import it
OWNERS = {
    "asyncpg": {"db/postgres.py"},
    "sqlite3": {"db/sqlite.py"},
    "coredis": {"redis.py"},
    "hypercorn": {"http/server.py"},
}
# Web framework: the HTTP layer, each package's routes.py (its HTTP surface), and the test
# routes shipped in testing.py. Domain modules (service.py, ledger.py, ...) never.
QUART_ALLOWED_PREFIXES = ("http/", "testing.py", "supervisor.py")


def may_import_quart(relative: str) -> bool:
    return relative.startswith(QUART_ALLOWED_PREFIXES) or relative.endswith("/routes.py")


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (type-only imports cost nothing at
    run time and create no dependency)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def reads_environment(path: Path) -> bool:
    """Whether the code touches os.environ / os.getenv (not a docstring mentioning it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "environb")
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            return True
    return False


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_drivers_are_imported_only_by_their_owner(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    found = imports(path)
    for module, owners in OWNERS.items():
        if module in found:
            assert relative in owners, f"{relative} imports {module}; only {owners} may"
    if {"quart", "quart_trio"} & found:
        assert may_import_quart(relative), f"{relative} imports quart"


def test_only_config_reads_the_environment() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in SOURCES
        if reads_environment(path) and path.name != "config.py"
    ]
    assert offenders == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nimport sqlite3\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import asyncpg\nfrom coredis import Redis\nx = os.environ\n"
    )
    assert {"sqlite3", "coredis"} <= imports(bad)
    assert "asyncpg" not in imports(bad)  # type-only
    assert reads_environment(bad)
    harmless = tmp_path / "doc.py"
    harmless.write_text('"""We never touch os.environ here."""\n')
    assert not reads_environment(harmless)


# --- internal rules: every import counts, type-only and function-level ones included ---------

CORE_PACKAGES = ("accounts", "credits", "jobs", "events", "payments", "storage", "providers", "db")
# The configuration layer: the settings tree, its loading and validation, the value formats.
CONFIG_MODULES = ("config.py", "config_rules.py", "settings.py", "setting_formats.py")
# All that configuration may import of lumiku: itself and the error tree (DESIGN: config
# knows no domain; a domain value is checked with a domain-free parser, `setting_formats`).
CONFIG_MAY_IMPORT = frozenset(
    {"lumiku.errors", *(f"lumiku.{name.removesuffix('.py')}" for name in CONFIG_MODULES)}
)


def lumiku_modules(path: Path) -> set[str]:
    """The `lumiku` modules `path` imports, wherever the import stands (under TYPE_CHECKING,
    inside a function): `from lumiku import apps` → lumiku.apps, `from lumiku.jobs.kinds
    import JobKind` → lumiku.jobs.kinds."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lumiku":
                found.update(f"lumiku.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return {name for name in found if name == "lumiku" or name.startswith("lumiku.")}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def core_imports_of_apps(path: Path) -> list[str]:
    return sorted(m for m in lumiku_modules(path) if within(m, "lumiku.apps"))


def domain_imports_of_config(path: Path) -> list[str]:
    return sorted(m for m in lumiku_modules(path) - CONFIG_MAY_IMPORT if m != "lumiku")


def _is_store(node: ast.AST) -> bool:
    """`deps.store`, `current_deps().store`, or a bare name `store`."""
    return (isinstance(node, ast.Attribute) and node.attr == "store") or (
        isinstance(node, ast.Name) and node.id == "store"
    )


def store_uses(path: Path) -> list[int]:
    """Lines where `path` mentions the Store at all (routes pass `deps` to services)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return sorted({node.lineno for node in ast.walk(tree) if _is_store(node)})


def store_calls(path: Path) -> list[int]:
    """Lines where `path` calls the Store itself (`deps.store.fetch_one(...)`,
    `store.transaction()`) or imports the SQL machinery of `lumiku.db`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = {
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and _is_store(node.func.value)
    }
    lines.update(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.level == 0
        and within(node.module, "lumiku.db")
    )
    return sorted(lines)


def in_core(relative: str) -> bool:
    return relative.startswith(tuple(f"{package}/" for package in CORE_PACKAGES)) or (
        relative in CONFIG_MODULES
    )


ROUTES = sorted(path for path in SOURCES if path.name == "routes.py")
# Routes that may still touch the Store, each named with why; none today (Pose Generator's
# were made thin in issue 14). An entry whose module is clean fails
# `test_the_allow_list_is_not_stale` until it goes.
TOUCHES_THE_STORE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if in_core(str(p.relative_to(PACKAGE)))],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_core_never_imports_an_app(path: Path) -> None:
    """accounts, credits, jobs (the job contract is `jobs.kinds`: apps bring their kinds
    through `Deps.kinds`), events, payments, storage, providers, db and config."""
    assert core_imports_of_apps(path) == []


def test_jobs_does_not_import_apps() -> None:
    jobs = sorted((PACKAGE / "jobs").rglob("*.py"))
    assert PACKAGE / "jobs" / "worker.py" in jobs
    assert {str(p.relative_to(PACKAGE)): core_imports_of_apps(p) for p in jobs} == {
        str(p.relative_to(PACKAGE)): [] for p in jobs
    }


@pytest.mark.parametrize("name", CONFIG_MODULES)
def test_config_imports_no_domain_code(name: str) -> None:
    assert domain_imports_of_config(PACKAGE / name) == []


@pytest.mark.parametrize(
    "path",
    [p for p in ROUTES if str(p.relative_to(PACKAGE)) not in TOUCHES_THE_STORE],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_routes_never_touch_the_store(path: Path) -> None:
    """Routes call services with `deps`; they neither call the Store nor hand it on."""
    relative = str(path.relative_to(PACKAGE))
    assert store_calls(path) == [], f"{relative} calls the Store or loads SQL"
    assert store_uses(path) == [], f"{relative} hands the Store on; call a service with deps"


def test_the_allow_list_is_not_stale() -> None:
    assert {str(p.relative_to(PACKAGE)) for p in ROUTES} >= TOUCHES_THE_STORE
    for relative in TOUCHES_THE_STORE:
        assert store_uses(PACKAGE / relative), f"{relative} is clean: drop it from the list"


def test_the_internal_checks_see_a_violation(tmp_path: Path) -> None:
    job_module = tmp_path / "worker.py"
    job_module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from lumiku import apps\n"
        "if TYPE_CHECKING:\n    from lumiku.apps.registry import JobKind\n"
        "def late():\n    import lumiku.apps.builtin\n"
        "from lumiku.jobs.kinds import Outcome\n"
    )
    assert core_imports_of_apps(job_module) == [
        "lumiku.apps",
        "lumiku.apps.builtin",
        "lumiku.apps.registry",
    ]
    config_module = tmp_path / "config_rules.py"
    config_module.write_text(
        "from lumiku.errors import ConfigError\n"
        "from lumiku.setting_formats import flag_entries\n"
        "def rule(value):\n    from lumiku.flags import parse_entries\n"
        "from lumiku.payments.packages import parse_packages\n"
        "from lumiku import redis\n"
    )
    assert domain_imports_of_config(config_module) == [
        "lumiku.flags",
        "lumiku.payments.packages",
        "lumiku.redis",
    ]
    routes = tmp_path / "routes.py"
    routes.write_text(
        "async def passes(deps):\n    return await ledger.balance(deps.store, 1)\n"
        "async def calls(deps):\n    return await deps.store.fetch_one(Q.row, 1)\n"
        "async def opens():\n    async with current_deps().store.transaction() as tx:\n"
        "        pass\n"
        "from lumiku.db.queries import load_queries\n"
        "async def thin(deps):\n    return await service.balance(deps, 1)\n"
    )
    assert store_calls(routes) == [4, 6, 8]
    assert store_uses(routes) == [2, 4, 6]


# Which app owns which table. Migrations still live in the core's folders (issue 14 moves
# them into each app's package, after which this map is read from there); until then it is
# declared here, and `test_every_table_has_an_owner` keeps it complete.
APP_TABLES = {
    "avatar_creator": frozenset(
        {"avatars", "avatar_projects", "avatar_generations", "avatar_usage"}
    ),
    "pose_generator": frozenset(
        {"pose_projects", "pose_generations", "generated_poses", "pose_requests"}
    ),
}
CORE_TABLES = frozenset(
    {"users", "credit_accounts", "credit_entries", "jobs", "idempotency_keys", "payments"}
)
MIGRATIONS = PACKAGE / "db" / "migrations"


_TABLE_REFERENCE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(\w+)", re.I)


def tables_used(path: Path) -> set[str]:
    """The tables a `.sql` file's statements read or write (comments left out). Python
    holds no SQL (DESIGN), so the queries files are where a table is reached."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    return {name.lower() for name in _TABLE_REFERENCE.findall(text)}


def foreign_tables(app: str, app_dir: Path) -> dict[str, list[str]]:
    """Per queries file of `app_dir`: the tables of other apps its statements use."""
    others = frozenset().union(*(t for a, t in APP_TABLES.items() if a != app))
    found = {}
    for path in sorted(app_dir.rglob("*.sql")):
        named = sorted(tables_used(path) & others)
        if named:
            found[path.name] = named
    return found


def test_every_table_has_an_owner() -> None:
    created = {
        name.lower()
        for path in MIGRATIONS.rglob("*.sql")
        for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", path.read_text(), re.I)
    } - {"schema_migrations"}
    owned = CORE_TABLES.union(*APP_TABLES.values())
    assert created == owned


@pytest.mark.parametrize("app", sorted(APP_TABLES))
def test_no_app_reads_another_apps_tables(app: str) -> None:
    """Apps use each other through public service functions (SPEC §17), never tables."""
    assert foreign_tables(app, PACKAGE / "apps" / app) == {}


def test_the_table_check_sees_a_violation(tmp_path: Path) -> None:
    (tmp_path / "queries.sql").write_text(
        "-- name: image (avatars are read through avatar_creator.service)\n"
        "SELECT image_key FROM avatars WHERE id = $1;\n"
        "-- name: mine\nSELECT * FROM pose_projects p JOIN jobs j ON true;\n"
    )
    (tmp_path / "queries.sqlite.sql").write_text(
        "-- name: used\nINSERT INTO avatar_usage (avatar_id) VALUES (?1);\n"
    )
    assert foreign_tables("pose_generator", tmp_path) == {
        "queries.sql": ["avatars"],
        "queries.sqlite.sql": ["avatar_usage"],
    }
