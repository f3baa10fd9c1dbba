"""Migration files and the schema status arithmetic (the migrator itself runs in
tests/contract on both backends)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lumiku.db.migrate import SchemaStatus, load_migrations
from lumiku.db.store import sqlite_path
from lumiku.errors import ConfigError


def test_both_backends_ship_the_same_migrations() -> None:
    postgres = load_migrations("postgres")
    sqlite = load_migrations("sqlite")
    assert [m.name for m in postgres] == [m.name for m in sqlite]
    assert postgres[0].name == "0001_initial"
    assert [m.version for m in postgres] == sorted({m.version for m in postgres})
    first = postgres[0]
    assert first.checksum == hashlib.sha256(first.sql.encode()).hexdigest()


def _write(directory: Path, backend: str, name: str, sql: str = "SELECT 1;") -> None:
    (directory / backend).mkdir(parents=True, exist_ok=True)
    (directory / backend / name).write_text(sql)


def test_sources_combine_in_version_order(tmp_path: Path) -> None:
    _write(tmp_path, "sqlite", "0500_middle.sql")
    _write(tmp_path, "sqlite", "README.txt")
    names = [m.name for m in load_migrations("sqlite", ("lumiku.db", tmp_path))]
    assert names[0] == "0001_initial"
    assert "0500_middle" in names
    assert names.index("0500_middle") > names.index("0001_initial")


def test_crlf_does_not_change_the_checksum(tmp_path: Path) -> None:
    _write(tmp_path / "a", "sqlite", "0001_x.sql", "SELECT 1;\n")
    _write(tmp_path / "b", "sqlite", "0001_x.sql", "SELECT 1;\r\n")
    (a,) = load_migrations("sqlite", (tmp_path / "a",))
    (b,) = load_migrations("sqlite", (tmp_path / "b",))
    assert a.checksum == b.checksum


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["1_short.sql"], "not named NNNN_name.sql"),
        (["0001_Capital.sql"], "not named NNNN_name.sql"),
        (["0002_a.sql", "0002_b.sql"], "share a version number"),
    ],
)
def test_badly_named_migrations_are_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        _write(tmp_path, "postgres", name)
    with pytest.raises(ValueError, match=message):
        load_migrations("postgres", (tmp_path,))


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no sqlite migrations directory"):
        load_migrations("sqlite", (tmp_path,))


def test_schema_status_arithmetic() -> None:
    empty = SchemaStatus((), ("0001_a", "0002_b"))
    assert (empty.pending, empty.unknown, empty.version, empty.is_current) == (
        ("0001_a", "0002_b"),
        (),
        0,
        False,
    )
    current = SchemaStatus(("0001_a", "0002_b"), ("0001_a", "0002_b"))
    assert (current.pending, current.version, current.is_current) == ((), 2, True)
    ahead = SchemaStatus(("0001_a", "0002_b", "0003_c"), ("0001_a", "0002_b"))
    assert (ahead.unknown, ahead.version, ahead.is_current) == (("0003_c",), 3, False)
    changed = SchemaStatus(("0001_a",), ("0001_a",), changed=("0001_a",))
    assert not changed.is_current


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lumiku.db", "var/lumiku.db"),
        ("sqlite:///./var/lumiku.db", "./var/lumiku.db"),
        ("sqlite:////srv/lumiku/lumiku.db", "/srv/lumiku/lumiku.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite:relative.db", "sqlite:///x.db?mode=ro"]
)
def test_malformed_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigError, match=r"database\.url"):
        sqlite_path(url)
