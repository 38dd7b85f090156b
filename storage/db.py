"""Connection pool factory and small helpers shared by the repositories."""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, whether held directly or borrowed from a pool.
Conn = asyncpg.Connection | PoolConnectionProxy
#: Anything that can run a query: a connection or the pool itself.
Executor = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool

#: Exceptions that mean "the database is unreachable right now" (not a bug).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    # A connection whose server session was terminated (PostgreSQL restart)
    # can surface as a protocol-state error once; asyncpg then drops it.
    asyncpg.exceptions.InternalClientError,
)


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool whose connections time out rather than hang when Postgres is gone."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=15,
        timeout=5,
        max_inactive_connection_lifetime=120,
        server_settings={"application_name": "digis"},
        # asyncpg's default reset on release is kept on purpose: skipping it
        # was measured ~10% faster on small queries, but the chaos run showed
        # connections left in a broken protocol state after a PostgreSQL
        # outage being handed to the next request (InternalClientError).
        # The reset query fails on such a connection, which is then dropped.
    )
    return pool


def record_dict(record: Any) -> dict[str, Any]:
    """An asyncpg Record as a plain dict (for row dataclasses)."""
    return dict(record.items())
