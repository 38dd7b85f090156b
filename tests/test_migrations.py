"""Migrations apply in order, once, and refuse edited history."""

from __future__ import annotations

import asyncpg
import pytest

from storage.migrate import Migration, MigrationError, discover, migrate


async def test_migrating_twice_is_a_no_op(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        assert await migrate(conn) == []  # the template is already migrated
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in discover()]
    finally:
        await conn.close()


async def test_fresh_database_gets_every_migration_in_order(pg_cluster, database: str) -> None:
    admin = await asyncpg.connect(pg_cluster.dsn())
    await admin.execute("CREATE DATABASE fresh_migrate_test")
    await admin.close()
    conn = await asyncpg.connect(pg_cluster.dsn("fresh_migrate_test"))
    try:
        applied = await migrate(conn)
        assert applied == [f"{m.version:04d}_{m.name}" for m in discover()]
        assert await migrate(conn) == []
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_cluster.dsn())
        await admin.execute("DROP DATABASE fresh_migrate_test WITH (FORCE)")
        await admin.close()


async def test_an_edited_migration_is_refused(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        first = discover()[0]
        edited = [Migration(first.version, first.name, first.sql + "\n-- edited\n")]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, edited)
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        broken = [
            *discover(),
            Migration(9999, "broken", "CREATE TABLE ok_part (x int); SELECT 1/0;"),
        ]
        with pytest.raises(MigrationError, match="9999_broken"):
            await migrate(conn, broken)
        assert await conn.fetchval("SELECT to_regclass('ok_part')") is None
        assert (
            await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9999") == 0
        )
    finally:
        await conn.close()
