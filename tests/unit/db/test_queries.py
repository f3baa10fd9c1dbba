"""The named-SQL loader: blocks, overrides, parameter rewriting, errors."""

from __future__ import annotations

import pytest

from lumiku.db.queries import (
    Query,
    QueryFileError,
    UnknownQuery,
    build_queries,
    is_read_only,
    load_queries,
    parse_blocks,
    to_sqlite_params,
)


def test_blocks_run_from_their_name_to_the_next() -> None:
    blocks = parse_blocks(
        "-- header comment\n\n-- name: a\nSELECT 1;\n\n--name:b\n-- doc\nSELECT\n  2\n",
        "test.sql",
    )
    assert blocks == {"a": "SELECT 1", "b": "-- doc\nSELECT\n  2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "duplicate query name 'a'"),
        ("-- name: Bad-Name\nSELECT 1", "invalid query name"),
        ("-- name: \nSELECT 1", "invalid query name"),
        ("-- name: two words\nSELECT 1", "invalid query name 'two words'"),
        ("SELECT 0\n-- name: a\nSELECT 1", "before the first"),
        ("-- name: a\n-- only a comment\n\n-- name: b\nSELECT 1", "'a' has no statement"),
    ],
)
def test_malformed_files_fail_at_load(text: str, message: str) -> None:
    with pytest.raises(QueryFileError, match=message):
        parse_blocks(text, "test.sql")


def test_overrides_replace_one_dialect() -> None:
    queries = build_queries(
        "-- name: a\nSELECT $1\n-- name: b\nSELECT now()",
        sqlite="-- name: b\nSELECT strftime('%s', 'now') + $1",
        postgres="-- name: a\nSELECT $1::int",
    )
    assert queries["a"] == Query("a", "SELECT $1::int", "SELECT ?1")
    assert queries["b"] == Query("b", "SELECT now()", "SELECT strftime('%s', 'now') + ?1")


def test_an_override_without_a_base_block_is_an_error() -> None:
    with pytest.raises(QueryFileError, match="sqlite override without a base block: c"):
        build_queries("-- name: a\nSELECT 1", sqlite="-- name: c\nSELECT 3")
    with pytest.raises(QueryFileError, match="missing_in_base"):
        load_queries("tests.unit.db", "orphan.sql")


@pytest.mark.parametrize(
    ("postgres", "sqlite"),
    [
        ("SELECT $1, $2, $10", "SELECT ?1, ?2, ?10"),
        ("SELECT '$1', $1", "SELECT '$1', ?1"),
        ("SELECT 'it''s $1', $2", "SELECT 'it''s $1', ?2"),
        ('SELECT "col$1", $1', 'SELECT "col$1", ?1'),
        ("SELECT 1 -- $1\n, $2", "SELECT 1 -- $1\n, ?2"),
        ("SELECT /* $1 */ $2", "SELECT /* $1 */ ?2"),
        ("SELECT $$ $1 $$, $tag$ $1 $tag$, $1", "SELECT $$ $1 $$, $tag$ $1 $tag$, ?1"),
        ("SELECT E'\\' $1', $1", "SELECT E'\\' $1', ?1"),
        ("SELECT a$1 FROM t", "SELECT a$1 FROM t"),
        ("SELECT * FROM t WHERE a=$1 AND b>=$2", "SELECT * FROM t WHERE a=?1 AND b>=?2"),
    ],
)
def test_parameters_are_rewritten_outside_literals_only(postgres: str, sqlite: str) -> None:
    assert to_sqlite_params(postgres) == sqlite


def test_load_queries_reads_a_package_once_with_its_overrides() -> None:
    queries = load_queries("tests.unit.db", "sample.sql")
    assert load_queries("tests.unit.db", "sample.sql") is queries
    assert list(queries) == ["first", "second", "differs"]
    assert len(queries) == 3
    assert queries.first.postgres == (
        "-- Comment lines under the name are kept with the statement.\n"
        "SELECT * FROM users WHERE id = $1"
    )
    assert queries.first.sqlite.endswith("WHERE id = ?1")
    assert queries.second.sqlite == "UPDATE users SET name = ?2 WHERE id = ?1"
    assert queries.differs.postgres == "SELECT now()"
    assert queries.differs.sqlite.startswith("SELECT strftime(")


def test_unknown_names_fail_clearly() -> None:
    queries = load_queries("tests.unit.db", "sample.sql")
    with pytest.raises(UnknownQuery, match=r"no query named 'frist' .*did you mean first"):
        queries["frist"]
    with pytest.raises(AttributeError, match="no query named 'secnd'"):
        _ = queries.secnd
    with pytest.raises(QueryFileError, match="does not exist"):
        load_queries("tests.unit.db", "absent.sql")


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT 1", True),
        ("  -- comment\n select * from t", True),
        ("/* x */ VALUES (1)", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", False),
        ("WITH x AS (SELECT 'insert') SELECT updated_at FROM x", True),
        ("INSERT INTO t VALUES (1) RETURNING *", False),
        ("UPDATE t SET a = 1", False),
        ("PRAGMA foreign_keys", False),
    ],
)
def test_read_only_statements_are_recognised(sql: str, read_only: bool) -> None:
    assert is_read_only(sql) is read_only
