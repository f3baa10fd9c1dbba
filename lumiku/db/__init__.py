"""Persistence: the `Store` over PostgreSQL or SQLite, named queries and migrations.

`store.py` holds the interface and `open_store`; `postgres.py` and `sqlite.py` are the only
modules that import a database driver.
"""

from __future__ import annotations

from lumiku.db.migrate import SchemaStatus
from lumiku.db.queries import Queries, Query, load_queries
from lumiku.db.store import Executor, Row, Store, Tx, open_store

__all__ = [
    "Executor",
    "Queries",
    "Query",
    "Row",
    "SchemaStatus",
    "Store",
    "Tx",
    "load_queries",
    "open_store",
]
