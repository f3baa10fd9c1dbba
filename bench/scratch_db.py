"""Scratch PostgreSQL databases for the benchmarks: created empty, dropped afterwards.

The server comes from `LUMIKU_BENCH_POSTGRES_URL` (default: the local server as `postgres`,
the same one the test suite uses). Needs the `bench` extra (psycopg).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg

ADMIN_URL: Final = os.environ.get(
    "LUMIKU_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def url_of(name: str) -> str:
    """The admin URL with its database replaced by `name`."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


@contextlib.contextmanager
def scratch_database(prefix: str, parameters: Mapping[str, str] | None = None) -> Iterator[str]:
    """A new empty database named `<prefix>_<random>`, with `parameters` as its own defaults
    (`ALTER DATABASE … SET`, e.g. synchronous_commit); yields its URL and drops it on exit
    (closing whatever connections are still open to it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        for key, value in (parameters or {}).items():
            admin.execute(f'ALTER DATABASE "{name}" SET {key} = {value}')
    try:
        yield url_of(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
