"""Servers under test as subprocesses: ``digis serve``, ``digis seed`` and the peers.

Everything here is synchronous (``subprocess.Popen`` plus a thread that
reads stderr), so a server can outlive an event loop: the CLI starts one per
run, a test module starts one per module and runs several scenarios against
it. A started server is ready when it printed ``listening on http://...``;
its stderr keeps being read (the last lines are kept for error messages) so
a chatty server never blocks on a full pipe.

:func:`loadtest_env` is the environment the harness gives a spawned
``digis serve``: per-address handshake and socket limits raised (all load
comes from 127.0.0.1), logging at WARNING, a cheap argon2 (``seed`` hashes
one shared password).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LISTENING = re.compile(r"listening on (http://[\w.\-\[\]:]+:\d+)")


class SpawnError(Exception):
    """A subprocess failed to start or exited with an error (message has its tail)."""


def digis_command() -> list[str]:
    """How to run ``digis``: the console script beside this Python, else ``-m server.cli``."""
    script = Path(sys.executable).with_name("digis")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


def loadtest_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a spawned ``digis serve`` / ``digis seed`` (see module docstring)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIGIS_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        DIGIS_DATA_DIR=str(data_dir),
        DIGIS_HOST="127.0.0.1",
        DIGIS_PORT="0",
        DIGIS_LOG_LEVEL="WARNING",
        DIGIS_ARGON2_MEMORY_KIB="1024",
        DIGIS_JWT_SECRET="loadtest-" + secrets.token_hex(24),
        DIGIS_HANDSHAKE_RATE="1000000",
        DIGIS_HANDSHAKE_BURST="1000000",
        DIGIS_MAX_SOCKETS_PER_ADDRESS="1000000",
        DIGIS_MAX_SOCKETS_PER_USER="100",
    )
    env.update(extra)
    return env


class ServerProcess:
    """One long-running server subprocess that announces ``listening on URL``."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.command = command
        self.env = env
        #: Called (from the reader thread) with every stderr line.
        self.on_line = on_line
        self.url = ""
        self.lines: deque[str] = deque(maxlen=200)
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> str:
        """Start and wait until it listens; returns its ``http://`` URL.

        Raises :class:`SpawnError` (with the process's last lines) if it exits
        or does not announce itself within ``timeout`` seconds.
        """
        self.process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(timeout=5)
                raise SpawnError(f"{' '.join(self.command)} did not start:\n" + "".join(self.lines))
        return self.url

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            if self.on_line is not None:
                self.on_line(line)
            if not self._ready.is_set():
                match = _LISTENING.search(line)
                if match:
                    self.url = match.group(1)
                    self._ready.set()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._reader is not None:
            self._reader.join(2)
        return process.returncode


@dataclass(frozen=True)
class SeedRequest:
    fans: int
    creators: int
    tokens: int
    rate: int


def run_seed(request: SeedRequest, out: Path, env: dict[str, str], timeout: float = 300.0) -> None:
    """``digis seed`` into ``out``; raises :class:`SpawnError` with its output on failure."""
    command = [
        *digis_command(),
        "seed",
        "--fans",
        str(request.fans),
        "--creators",
        str(request.creators),
        "--tokens",
        str(request.tokens),
        "--rate",
        str(request.rate),
        "--token-ttl",
        "86400",
        "--out",
        str(out),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SpawnError(f"digis seed took longer than {timeout} s") from exc
    if done.returncode != 0:
        raise SpawnError("digis seed failed:\n" + done.stderr.decode("utf-8", "replace")[-2000:])


def run_ledger_verify(env: dict[str, str], timeout: float = 300.0) -> tuple[bool, str]:
    """``digis ledger verify`` on the server's data dir: (consistent, its output)."""
    try:
        done = subprocess.run(
            [*digis_command(), "ledger", "verify"],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"digis ledger verify took longer than {timeout} s"
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    return done.returncode == 0, output


def digis_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ServerProcess:
    """A ``digis serve`` on a free loopback port with embedded services in ``data_dir``."""
    return ServerProcess([*digis_command(), "serve"], env or loadtest_env(data_dir), on_line)


def peer_server(name: str) -> ServerProcess:
    """A fan-out peer (``bare`` or ``sio``) on a free loopback port."""
    return ServerProcess([sys.executable, "-m", f"loadtest.peers.{name}", "--port", "0"])


def postgres_dsn(data_dir: Path) -> str | None:
    """The DSN of the embedded PostgreSQL a spawned server runs in ``data_dir``."""
    try:
        port = (data_dir / "pg.port").read_text().strip()
        password = (data_dir / "pg.password").read_text().strip()
    except OSError:
        return None
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/digis"


def postmaster_pid(data_dir: Path) -> int | None:
    """The embedded PostgreSQL's postmaster pid (first line of postmaster.pid)."""
    try:
        return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_services(env: dict[str, str], timeout: float = 60.0) -> None:
    """``digis services stop`` for the data directory in ``env`` (idempotent)."""
    subprocess.run(
        [*digis_command(), "services", "stop"],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
