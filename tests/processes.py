"""Running `digis` as a real subprocess, the way users and operators do."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from loadtest.spawn import digis_command

_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIGIS_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(DIGIS_ARGON2_MEMORY_KIB="1024", DIGIS_LOG_LEVEL="WARNING", DIGIS_PORT="0")
    env.update(extra)
    return env


class Served:
    def __init__(self, process: asyncio.subprocess.Process, url: str, lines: list[str]) -> None:
        self.process = process
        self.url = url
        self.lines = lines

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


@asynccontextmanager
async def serve(env: dict[str, str], startup_timeout: float = 60) -> AsyncIterator[Served]:
    process = await asyncio.create_subprocess_exec(
        *digis_command(), "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    lines: list[str] = []
    url = None
    try:
        async with asyncio.timeout(startup_timeout):
            while url is None:
                raw = await process.stderr.readline()
                if not raw:
                    raise AssertionError("digis serve exited early:\n" + "".join(lines))
                line = raw.decode()
                lines.append(line)
                match = _LISTENING.search(line)
                url = match.group(1) if match else None

        async def pump() -> None:
            assert process.stderr is not None
            while raw := await process.stderr.readline():
                lines.append(raw.decode())

        pumping = asyncio.get_running_loop().create_task(pump())
        yield Served(process, url, lines)
        if process.returncode is not None:
            await pumping
        else:
            pumping.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
