"""PostgreSQL errors that mean "cannot reach or talk to the database" become Unavailable
(503 at the HTTP edge); SQL errors stay what they are."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from lumiku.db.postgres import _leaves_connection_broken, map_error
from lumiku.errors import DatabaseError, Unavailable, UniqueViolation

UNAVAILABLE = [
    ConnectionResetError(104, "Connection reset by peer"),
    ConnectionRefusedError(111, "Connect call failed"),
    TimeoutError(),
    OSError(113, "No route to host"),
    asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("pool is closing"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
    asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist'),
]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_outages_are_unavailable_and_break_the_connection(error: BaseException) -> None:
    assert type(map_error(error)) is Unavailable
    assert _leaves_connection_broken(error)


def test_a_cancellation_mid_statement_breaks_the_connection() -> None:
    assert _leaves_connection_broken(asyncio.CancelledError())
    assert _leaves_connection_broken(Unavailable("PostgreSQL: no answer within 8 s"))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_sql_errors_are_not_outages_and_keep_the_connection(error: BaseException) -> None:
    mapped = map_error(error)
    assert isinstance(mapped, DatabaseError)
    assert not isinstance(mapped, Unavailable)
    assert not _leaves_connection_broken(error)
    assert not _leaves_connection_broken(UniqueViolation("PostgreSQL: duplicate key"))


def test_an_error_of_the_callers_own_code_keeps_the_connection() -> None:
    assert not _leaves_connection_broken(ValueError("a domain check in a unit of work"))
