"""Who is online, across nodes: Redis when it answers, this node's sockets when not.

Each node keeps a Redis set ``digis:presence:<node>`` of the users with at
least one socket on it, and a heartbeat in the sorted set ``digis:nodes``.
A user is online if any node that heartbeated in the last
``NODE_TIMEOUT`` seconds lists them, so a crashed node's users go offline
by themselves.

Degradation (documented in README): when Redis is down, updates are not
written and lookups answer from this node's sockets only; when Redis
returns, the next heartbeat rewrites this node's set in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from protocol.events import PresenceChanged
from server.hub import Hub

log = logging.getLogger("digis.presence")

NODES_KEY = "digis:nodes"
HEARTBEAT_EVERY = 10.0
NODE_TIMEOUT = 30.0
_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def node_key(node: str) -> str:
    return f"digis:presence:{node}"


class Presence:
    def __init__(self, redis: aioredis.Redis, hub: Hub, node: str) -> None:
        self.redis = redis
        self.hub = hub
        self.node = node
        self.degraded = False
        self.peers: dict[int, set[int]] = {}
        self._pending: dict[int, bool] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.hub.on_presence(self._changed)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*_ERRORS):
            await self.redis.delete(node_key(self.node))
            await self.redis.zrem(NODES_KEY, self.node)

    def _changed(self, user_id: int, online: bool) -> None:
        """Hub callback: the user's first socket opened or last one closed here."""
        self._pending[user_id] = online
        self._wake.set()
        peers = self.peers.get(user_id)
        if peers:
            event = PresenceChanged(
                user=user_id, online=online, availability="online" if online else "offline"
            )
            self.hub.send_to_users(peers, event)

    def link(self, a: int, b: int) -> None:
        """``a`` and ``b`` interact (a call): each sees the other come and go."""
        self.peers.setdefault(a, set()).add(b)
        self.peers.setdefault(b, set()).add(a)

    def unlink(self, a: int, b: int) -> None:
        for x, y in ((a, b), (b, a)):
            peers = self.peers.get(x)
            if peers is not None:
                peers.discard(y)
                if not peers:
                    del self.peers[x]

    async def _run(self) -> None:
        next_heartbeat = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_heartbeat - time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if time.monotonic() >= next_heartbeat or self.degraded:
                    await self._resync()
                    next_heartbeat = time.monotonic() + HEARTBEAT_EVERY
                elif self._pending:
                    await self._apply_pending()
                if self.degraded:
                    log.info("presence back on Redis")
                self.degraded = False
            except Exception as exc:  # the presence task must never die
                if not isinstance(exc, _ERRORS):
                    log.error("presence update failed", exc_info=True)
                if not self.degraded:
                    log.warning("Redis unavailable: presence answers from this node only")
                self.degraded = True
                next_heartbeat = time.monotonic() + 1.0

    async def _apply_pending(self) -> None:
        changes, self._pending = self._pending, {}
        key = node_key(self.node)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id, online in changes.items():
                    if online:
                        pipe.sadd(key, user_id)
                    else:
                        pipe.srem(key, user_id)
                await pipe.execute()
        except _ERRORS:
            self._pending = {**changes, **self._pending}
            raise

    async def _resync(self) -> None:
        """Rewrite this node's set from the hub and refresh the heartbeat."""
        self._pending = {}
        key = node_key(self.node)
        online = self.hub.online_users()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if online:
                pipe.sadd(key, *online)
            pipe.expire(key, int(NODE_TIMEOUT * 2))
            pipe.zadd(NODES_KEY, {self.node: time.time()})
            await pipe.execute()

    async def live_nodes(self) -> set[str] | None:
        """Nodes that heartbeated recently (this one included); None if Redis is down."""
        if self.degraded:
            return None
        try:
            nodes = await self.redis.zrangebyscore(NODES_KEY, time.time() - NODE_TIMEOUT, "+inf")
        except _ERRORS:
            return None
        return {n.decode() if isinstance(n, bytes) else str(n) for n in nodes} | {self.node}

    async def online(self, user_ids: list[int]) -> set[int]:
        """Which of ``user_ids`` are online on any live node (this node only if degraded)."""
        local = {u for u in user_ids if self.hub.is_online(u)}
        if not user_ids:
            return local
        nodes = await self.live_nodes()
        others = [] if nodes is None else sorted(nodes - {self.node})
        if not others:
            return local
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for node in others:
                    pipe.smismember(node_key(node), user_ids)
                answers = await pipe.execute()
        except _ERRORS:
            return local
        remote = {u for flags in answers for u, flag in zip(user_ids, flags, strict=True) if flag}
        return local | remote
