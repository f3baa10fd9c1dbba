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


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


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
        if "os.environ" in path.read_text() and path.name != "config.py"
    ]
    assert offenders == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlite3\nfrom coredis import Redis\n")
    assert {"sqlite3", "coredis"} <= imports(bad)
