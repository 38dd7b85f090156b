"""``digis loadtest chaos``: crash the server under money traffic, then audit.

One run owns a data directory whose embedded PostgreSQL and Redis outlive
every server process (``digis services start``). Each iteration makes sure
a ``digis serve`` is running (always the same node id, so a restarted node
settles what its predecessor left open), drives money-moving traffic for a
random while, then injects one fault:

* ``kill -9`` of the server: a crash point (the most frequent fault);
* SIGTERM: a graceful restart;
* PostgreSQL stopped for a few seconds, then started, while traffic goes on;
* Redis restarted while traffic goes on.

Traffic: fans calling creators (metered; some hang up, most are cut by the
faults), tips and gifts in a live stream and transfers, all with
idempotency keys; token purchases whose signed webhooks arrive late, twice,
across crashes, with refunds sometimes before the payment; creator payouts.

At the end the server is restarted once more (settling the last crash) and
stopped gracefully, and the run is audited (:mod:`loadtest.chaos_audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from client import Client, ClientError
from loadtest.chaos_audit import CallRecord, audit
from loadtest.harness import Target
from loadtest.roster import Roster, SeededUser, load_roster
from loadtest.spawn import (
    SeedRequest,
    ServerProcess,
    digis_command,
    digis_server,
    loadtest_env,
    run_seed,
    stop_services,
)
from loadtest.stripe_standin import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    StripeStandin,
    intent_event,
    new_id,
    refund_event,
    sign,
)
from protocol import events as ev

FAULTS = ("kill9", "sigterm", "postgres", "redis")
FAULT_WEIGHTS = (0.6, 0.15, 0.15, 0.1)
RATE = 60
FLUSH_INTERVAL = 0.25


@dataclass
class ChaosConfig:
    iterations: int = 10
    min_run: float = 0.5
    max_run: float = 3.0
    fans: int = 24
    creators: int = 4
    tokens: int = 3000
    seed: int | None = None
    keep_data: bool = False
    quiet: bool = False
    #: A fixed sequence of faults (cycled); empty: random by FAULT_WEIGHTS.
    faults: tuple[str, ...] = ()


@dataclass
class Webhook:
    intent: str
    kind: str
    body: dict[str, Any]


@dataclass
class Tally:
    crash_points: int = 0
    sigterms: int = 0
    postgres_outages: int = 0
    redis_restarts: int = 0
    calls_started: int = 0
    calls_hung_up: int = 0
    tips_ok: int = 0
    transfers_ok: int = 0
    purchases: int = 0
    webhooks_sent: int = 0
    webhooks_duplicated: int = 0
    webhooks_out_of_order: int = 0
    payouts: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)

    def refusal(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.data = Path(tempfile.mkdtemp(prefix="digis-chaos-"))
        self.env: dict[str, str] = {}
        self.server: ServerProcess | None = None
        self.standin = StripeStandin()
        self.tally = Tally()
        self.calls: dict[str, CallRecord] = {}
        self.outbox: list[Webhook] = []
        self.succeeded: set[str] = set()
        self.roster: Roster | None = None
        self._keys = 0

    # --- plumbing ----------------------------------------------------------------------

    def _services(self, *args: str) -> str:
        done = subprocess.run(
            [*digis_command(), "services", *args],
            env=self.env or loadtest_env(self.data),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    def _say(self, message: str) -> None:
        if not self.config.quiet:
            print(f"[chaos] {message}", flush=True)

    def key(self, prefix: str) -> str:
        self._keys += 1
        return f"chaos-{prefix}-{self._keys}"

    def _server_line(self, line: str) -> None:
        """Keep the server's error log lines (an INTERNAL_ERROR is a bug to report)."""
        if '"level": "error"' in line and len(self.tally.server_errors) < 50:
            self.tally.server_errors.append(line.strip()[:3000])

    async def start_server(self) -> str:
        server = self.server
        if server is not None and server.process is not None and server.process.poll() is None:
            return server.url
        self.server = digis_server(self.data, self.env, self._server_line)
        return await asyncio.to_thread(self.server.start, 120.0)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def ws_url(self) -> str:
        return Target(self.url).ws_url

    # --- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        await self.standin.start()
        try:
            urls = dict(
                line.split("=", 1)
                for line in self._services("start", "--env").split()
                if "=" in line
            )
            self.env = loadtest_env(
                self.data,
                DATABASE_URL=urls["DATABASE_URL"],
                REDIS_URL=urls["REDIS_URL"],
                DIGIS_NODE_ID="chaos-node",
                DIGIS_FLUSH_INTERVAL=str(FLUSH_INTERVAL),
                DIGIS_CALL_GRACE="2",
                DIGIS_CALL_HOLD_SECONDS="15",
                DIGIS_PAYOUT_MINIMUM="1",
                STRIPE_SECRET_KEY=SECRET_KEY,
                STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                STRIPE_API_BASE=self.standin.url,
            )
            seed = self.data / "seed.json"
            request = SeedRequest(self.config.fans, self.config.creators, self.config.tokens, RATE)
            await asyncio.to_thread(run_seed, request, seed, self.env)
            self.roster = load_roster(seed)
            await self.start_server()
            await self.prepare_creators()
            for iteration in range(1, self.config.iterations + 1):
                await self.start_server()
                if self.config.faults:
                    fault = self.config.faults[(iteration - 1) % len(self.config.faults)]
                else:
                    fault = self.random.choices(FAULTS, FAULT_WEIGHTS)[0]
                t = self.tally
                self._say(
                    f"iteration {iteration}/{self.config.iterations} "
                    f"[{time.monotonic() - started:.0f} s, {t.crash_points} crashes, "
                    f"{t.calls_started} calls, {t.purchases} purchases]: traffic, then {fault}"
                )
                await self.iteration(fault)
            await self.start_server()  # the restart settles the last crash
            await self.deliver_all_webhooks()
            await self.quiesce()
            assert self.server is not None
            await asyncio.to_thread(self.server.stop, 30.0)
            report = await audit(
                self.env, urls["DATABASE_URL"], self.calls, self.succeeded, FLUSH_INTERVAL, RATE
            )
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop, 30.0)
            stop_services(self.env or loadtest_env(self.data))
            await self.standin.close()
            if not self.config.keep_data:
                shutil.rmtree(self.data, ignore_errors=True)
        report["tally"] = self.tally.__dict__
        internal = self.tally.refused.get("INTERNAL_ERROR", 0)
        if internal or self.tally.server_errors:
            report["ok"] = False
            report["violations"] += internal + len(self.tally.server_errors)
        report["seconds"] = round(time.monotonic() - started, 1)
        return report

    async def prepare_creators(self) -> None:
        assert self.roster is not None
        for creator in self.roster.creators:
            async with Client.connect(self.ws_url, creator.token, reconnect=False) as c:
                await c.request("payout.account.set", account=f"acct_chaos{creator.id:06d}")

    async def iteration(self, fault: str) -> None:
        assert self.roster is not None
        run_for = self.random.uniform(self.config.min_run, self.config.max_run)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self.creator_loop(c, stop)) for c in self.roster.creators] + [
            asyncio.create_task(self.fan_loop(f, stop)) for f in self.roster.fans
        ]
        tasks.append(asyncio.create_task(self.webhook_loop(stop)))
        await asyncio.sleep(0.3)
        if fault in ("postgres", "redis"):
            await asyncio.sleep(run_for / 2)
            await self.outage(fault)
            await asyncio.sleep(run_for / 2)
        else:
            await asyncio.sleep(run_for)
            assert self.server is not None and self.server.process is not None
            if fault == "kill9":
                self.server.process.kill()
                self.tally.crash_points += 1
            else:
                await asyncio.to_thread(self.server.stop, 30.0)
                self.tally.sigterms += 1
        stop.set()
        await asyncio.wait(tasks, timeout=20)
        for task in tasks:
            task.cancel()
        if fault in ("kill9", "sigterm"):
            mark = time.monotonic()
            for call in self.calls.values():
                if call.ended_at is None:
                    call.ended_at = mark  # no meter runs past the server's end

    async def outage(self, which: str) -> None:
        flag = "--postgres" if which == "postgres" else "--redis"
        down = self.random.uniform(1.0, 3.0) if which == "postgres" else 0.2
        await asyncio.to_thread(self._services, "stop", flag)
        await asyncio.sleep(down)
        await asyncio.to_thread(self._services, "start", flag)
        if which == "postgres":
            self.tally.postgres_outages += 1
        else:
            self.tally.redis_restarts += 1

    # --- traffic -----------------------------------------------------------------------

    async def creator_loop(self, user: SeededUser, stop: asyncio.Event) -> None:
        """Stay online, accept calls, and sometimes ask for a payout."""
        with contextlib.suppress(ClientError, OSError, TimeoutError, asyncio.CancelledError):
            async with Client.connect(self.ws_url, user.token, reconnect=False) as c:
                await c.request("creator.availability.set", status="online")
                assert self.roster is not None
                if user.id == self.roster.creators[0].id:
                    with contextlib.suppress(ClientError):
                        await c.request("stream.start", title="chaos live")
                if self.random.random() < 0.5:
                    with contextlib.suppress(ClientError):
                        await c.request("payout.request", tokens=self.random.randint(1, 5))
                        self.tally.payouts += 1
                while not stop.is_set():
                    try:
                        event = await c.next_event(ev.CallIncoming, timeout=0.5)
                    except TimeoutError:
                        continue
                    assert isinstance(event, ev.CallIncoming)
                    try:
                        joined = await c.request("call.accept", invite=event.invite)
                    except ClientError as exc:
                        self.tally.refusal(getattr(exc, "code", "connection"))
                        continue
                    self.calls[joined.session] = CallRecord(joined.session, time.monotonic())
                    self.tally.calls_started += 1

    async def fan_loop(self, user: SeededUser, stop: asyncio.Event) -> None:
        assert self.roster is not None
        with contextlib.suppress(ClientError, OSError, TimeoutError, asyncio.CancelledError):
            async with Client.connect(self.ws_url, user.token, reconnect=False) as f:
                while not stop.is_set():
                    roll = self.random.random()
                    try:
                        if roll < 0.25:
                            await self.call_someone(f, stop)
                        elif roll < 0.55:
                            other = self.random.choice(self.roster.fans)
                            if other.id != user.id:
                                await f.request(
                                    "tokens.transfer",
                                    to=other.id,
                                    amount=self.random.randint(1, 20),
                                    key=self.key("xfer"),
                                )
                                self.tally.transfers_ok += 1
                        elif roll < 0.8:
                            await self.tip_in_a_stream(f)
                        else:
                            await self.buy(f, user)
                    except ClientError as exc:
                        code = getattr(exc, "code", None)
                        if code is None:
                            return  # connection lost: the fault struck
                        self.tally.refusal(code)
                    await asyncio.sleep(self.random.uniform(0.02, 0.2))

    async def call_someone(self, f: Client, stop: asyncio.Event) -> None:
        assert self.roster is not None
        creator = self.random.choice(self.roster.creators)
        await f.request("call.invite", creator=creator.id)
        started = await f.next_event(ev.CallStarted, timeout=5)
        assert isinstance(started, ev.CallStarted)
        session = started.call.session
        hang_up_after = self.random.uniform(0.5, 6.0)
        deadline = time.monotonic() + hang_up_after
        while time.monotonic() < deadline and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                tick = await f.next_event(ev.CallTick, ev.CallEnded, timeout=0.5)
                record = self.calls.get(session)
                if isinstance(tick, ev.CallTick) and record is not None:
                    record.last_tick = max(record.last_tick, tick.charged)
                if isinstance(tick, ev.CallEnded):
                    return
        if stop.is_set():
            return
        totals = await f.request("call.end", session=session)
        record = self.calls.get(session)
        if record is not None:
            record.ended_at = time.monotonic()
            record.final = totals.tokens_charged
        self.tally.calls_hung_up += 1

    async def tip_in_a_stream(self, f: Client) -> None:
        live = await f.request("streams.live")
        if not live.streams:
            return
        session = live.streams[0].session
        await f.request("stream.join", session=session)
        if self.random.random() < 0.7:
            await f.request(
                "tip.send", session=session, amount=self.random.randint(1, 10), key=self.key("tip")
            )
        else:
            await f.request("gift.send", session=session, gift="rose", key=self.key("gift"))
        self.tally.tips_ok += 1

    async def buy(self, f: Client, user: SeededUser) -> None:
        purchase = await f.request("tokens.purchase", package="tokens_100")
        self.tally.purchases += 1
        intent = purchase.payment_intent
        metadata = self.standin.intents[intent]["metadata"]
        charge = new_id("ch")
        succeeded = intent_event(
            "payment_intent.succeeded",
            intent=intent,
            amount=purchase.amount_cents,
            metadata=metadata,
            charge=charge,
        )
        batch = [Webhook(intent, "succeeded", succeeded)]
        if self.random.random() < 0.3:
            batch.append(Webhook(intent, "succeeded", succeeded))  # the same event twice
            self.tally.webhooks_duplicated += 1
        if self.random.random() < 0.2:
            refunded = refund_event(
                intent=intent,
                charge=charge,
                refunded=purchase.amount_cents // 2,
                amount=purchase.amount_cents,
            )
            refund = Webhook(intent, "refund", refunded)
            if self.random.random() < 0.5:
                batch.insert(0, refund)  # the refund overtakes the payment
                self.tally.webhooks_out_of_order += 1
            else:
                batch.append(refund)
        self.outbox.extend(batch)

    async def webhook_loop(self, stop: asyncio.Event) -> None:
        """Deliver queued webhooks late and in bursts, as Stripe does."""
        while not stop.is_set():
            await asyncio.sleep(self.random.uniform(0.05, 0.5))
            await self.deliver_some(self.random.randint(1, 5))

    async def deliver_some(self, count: int) -> int:
        delivered = 0
        async with aiohttp.ClientSession() as http:
            while self.outbox and delivered < count:
                hook = self.outbox[0]
                payload = json.dumps(hook.body).encode()
                headers = {
                    "Stripe-Signature": sign(payload, WEBHOOK_SECRET),
                    "Content-Type": "application/json",
                }
                try:
                    async with http.post(
                        self.url + "/webhooks/stripe", data=payload, headers=headers
                    ) as response:
                        if response.status != 200:
                            return delivered  # Stripe retries later
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return delivered
                self.outbox.pop(0)
                self.tally.webhooks_sent += 1
                if hook.kind == "succeeded":
                    self.succeeded.add(hook.intent)
                delivered += 1
        return delivered

    async def deliver_all_webhooks(self) -> None:
        deadline = time.monotonic() + 120
        while self.outbox and time.monotonic() < deadline:
            if not await self.deliver_some(50):
                await asyncio.sleep(0.5)

    async def quiesce(self) -> None:
        """Give the restarted node time to settle and its ledger writer to drain."""
        await asyncio.sleep(2 * FLUSH_INTERVAL + 1)


async def run_chaos(config: ChaosConfig) -> dict[str, Any]:
    return await ChaosRun(config).run()
