"""DESIGN's ownership rules, checked on the source: who may import which driver."""

from __future__ import annotations

import ast
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
