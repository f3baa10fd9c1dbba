"""Introspect a migrated database into a backend-neutral shape, and compare two of them.

Compared per table: columns in order with a type family (int, text, bool, timestamp, uuid,
json, real, blob), nullability and whether a DEFAULT exists (SQLite's INTEGER PRIMARY KEY
rowid alias and PostgreSQL identity columns count as none), the primary key, UNIQUE
constraints and indexes (columns, partial or not), foreign keys (columns, referenced table
and columns, ON DELETE) and the names of CHECK constraints (SQLite reports an unnamed CHECK
as `<unnamed>`; name them, so both backends report the same constraint in errors).
"""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

from lumiku.db.queries import load_queries
from lumiku.db.store import Store

Q: Final = load_queries("tests.contract", "introspect.sql")

_POSTGRES_FAMILIES: Final = {
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "boolean": "bool",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "naive timestamp",
    "uuid": "uuid",
    "jsonb": "json",
    "json": "json",
    "real": "real",
    "double precision": "real",
    "bytea": "blob",
}
_SQLITE_FAMILIES: Final = {
    "INTEGER": "int",
    "INT": "int",
    "BIGINT": "int",
    "SMALLINT": "int",
    "TEXT": "text",
    "VARCHAR": "text",
    "BOOLEAN": "bool",
    "TIMESTAMP": "timestamp",
    "UUID": "uuid",
    "JSON": "json",
    "REAL": "real",
    "DOUBLE": "real",
    "BLOB": "blob",
}
_NAMED_CHECK: Final = re.compile(r"\bCONSTRAINT\s+(\w+)\s+CHECK\b", re.I)
_ANY_CHECK: Final = re.compile(r"\bCHECK\s*\(", re.I)


@attrs.frozen
class Column:
    name: str
    family: str
    not_null: bool
    has_default: bool


@attrs.frozen
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # (columns, partial)
    uniques: frozenset[tuple[tuple[str, ...], bool]]
    # (columns, referenced table, referenced columns, on delete)
    foreign_keys: frozenset[tuple[tuple[str, ...], str, tuple[str, ...], str]]
    checks: tuple[str, ...]


async def introspect(store: Store) -> dict[str, Table]:
    """Every table of `store`'s schema, by name."""
    read = _postgres_table if store.backend == "postgres" else _sqlite_table
    names = [row["name"] for row in await store.fetch_all(Q.tables)]
    return {name: await read(store, name) for name in names}


async def _postgres_table(store: Store, name: str) -> Table:
    columns = tuple(
        Column(
            row["name"],
            _POSTGRES_FAMILIES.get(row["type"], f"unknown {row['type']}"),
            row["not_null"],
            row["has_default"],
        )
        for row in await store.fetch_all(Q.columns, name)
    )
    indexes = await store.fetch_all(Q.unique_indexes, name)
    primary = [tuple(row["columns"]) for row in indexes if row["is_primary"]]
    return Table(
        name,
        columns,
        primary[0] if primary else (),
        frozenset((tuple(r["columns"]), r["partial"]) for r in indexes if not r["is_primary"]),
        frozenset(
            (tuple(r["columns"]), r["ref_table"], tuple(r["ref_columns"]), r["on_delete"])
            for r in await store.fetch_all(Q.foreign_keys, name)
        ),
        tuple(row["name"] for row in await store.fetch_all(Q.check_constraints, name)),
    )


async def _sqlite_table(store: Store, name: str) -> Table:
    rows = await store.fetch_all(Q.columns, name)
    primary = tuple(r["name"] for r in sorted(rows, key=lambda r: r["pk"]) if r["pk"])
    uniques = set()
    for index in await store.fetch_all(Q.unique_indexes, name):
        if index["origin"] != "pk":
            columns = await store.fetch_all(Q.index_columns, index["name"])
            uniques.add((tuple(r["name"] for r in columns), bool(index["partial"])))
    return Table(
        name,
        tuple(
            Column(
                row["name"],
                _SQLITE_FAMILIES.get(row["type"].upper(), f"unknown {row['type']}"),
                bool(row["not_null"]),
                bool(row["has_default"]),
            )
            for row in rows
        ),
        primary,
        frozenset(uniques),
        await _sqlite_foreign_keys(store, name),
        _sqlite_checks(await store.fetch_val(Q.table_sql, name)),
    )


async def _sqlite_foreign_keys(
    store: Store, name: str
) -> frozenset[tuple[tuple[str, ...], str, tuple[str, ...], str]]:
    grouped: dict[int, list[Any]] = {}
    for row in await store.fetch_all(Q.foreign_keys, name):
        grouped.setdefault(row["id"], []).append(row)
    keys = set()
    for rows in grouped.values():
        ref_table = rows[0]["ref_table"]
        ref_columns = tuple(r["ref_column"] for r in rows)
        if None in ref_columns:  # REFERENCES t without columns: t's primary key
            ref_rows = await store.fetch_all(Q.columns, ref_table)
            ref_columns = tuple(
                r["name"] for r in sorted(ref_rows, key=lambda r: r["pk"]) if r["pk"]
            )
        keys.add(
            (
                tuple(r["column_name"] for r in rows),
                ref_table,
                ref_columns,
                rows[0]["on_delete"].lower(),
            )
        )
    return frozenset(keys)


def _sqlite_checks(sql: str) -> tuple[str, ...]:
    named = _NAMED_CHECK.findall(sql)
    unnamed = len(_ANY_CHECK.findall(sql)) - len(named)
    return tuple(sorted(named + ["<unnamed>"] * unnamed))


def differences(sqlite: dict[str, Table], postgres: dict[str, Table]) -> list[str]:
    """Human-readable differences between two introspected schemas; empty when equivalent."""
    found = []
    for name in sorted(set(sqlite) | set(postgres)):
        if name not in postgres or name not in sqlite:
            found.append(f"{name}: only on {'sqlite' if name in sqlite else 'postgres'}")
            continue
        a, b = sqlite[name], postgres[name]
        a_columns = {c.name: c for c in a.columns}
        b_columns = {c.name: c for c in b.columns}
        for column in sorted(set(a_columns) | set(b_columns)):
            if column not in a_columns or column not in b_columns:
                only = "sqlite" if column in a_columns else "postgres"
                found.append(f"{name}.{column}: only on {only}")
                continue
            for field in ("family", "not_null", "has_default"):
                x, y = getattr(a_columns[column], field), getattr(b_columns[column], field)
                if x != y:
                    found.append(f"{name}.{column}: {field} sqlite={x!r} postgres={y!r}")
        order_a = [c for c in a_columns if c in b_columns]
        order_b = [c for c in b_columns if c in a_columns]
        if order_a != order_b:
            found.append(f"{name}: column order sqlite={order_a} postgres={order_b}")
        for field in ("primary_key", "uniques", "foreign_keys", "checks"):
            x, y = getattr(a, field), getattr(b, field)
            if x != y:
                found.append(f"{name}: {field} sqlite={_show(x)} postgres={_show(y)}")
    return found


def _show(value: Any) -> str:
    return repr(sorted(value)) if isinstance(value, frozenset) else repr(value)
