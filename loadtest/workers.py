"""Client load spread over worker processes, with a go/stop handshake.

Python gives a process one core; a load generator in one process would be
the bottleneck long before the server. A :class:`Fleet` starts ``--workers``
processes (``spawn`` start method: nothing of the parent's event loop is
inherited), each running one scenario coroutine, ``worker(ctx)``, on its own
(uv)loop with its share of the clients.

The protocol between parent and workers, one ``multiprocessing`` queue up
and two events down:

1. a worker connects its clients, then ``await ctx.ready()`` -> sends
   ``ready`` and blocks until the parent sets *go* (so every worker starts
   the measured phase together, after every client is connected);
2. during the run it sends a ``progress`` snapshot of its :class:`Stats`
   every second; ``ctx.done()`` tells the parent its active work is over;
3. the parent sets *stop* (all done, or the scenario says settled, or time
   is up); ``ctx.stopping`` fires, the worker closes its clients and returns;
4. the worker sends ``final`` with its Stats (or ``crash`` with a traceback).

The parent never waits unboundedly: setup, run and teardown all have
deadlines, and a worker still alive at the end is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing as mp
import queue
import resource
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Protocol, TypeVar

from loadtest.stats import Stats, merged

T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


PROGRESS_EVERY = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs: ``module:function`` with its params."""

    index: int
    target: str
    params: dict[str, Any]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class WorkerContext:
    """Handed to a scenario's ``worker(ctx)`` coroutine inside the worker process."""

    def __init__(self, spec: WorkerSpec, up: Any, go: MpEvent, stop: MpEvent) -> None:
        self.index = spec.index
        self.params = spec.params
        self.stats = Stats()
        self.stopping = asyncio.Event()
        self.go_at = 0.0
        self._cpu_at_go = _cpu_seconds()
        #: Called before each snapshot, to fold hot-path counters into ``stats``.
        self.collectors: list[Callable[[], None]] = []
        self._up = up
        self._go = go
        self._stop = stop

    async def ready(self, timeout: float = 600.0) -> float:
        """Report ready and wait for *go*; returns the go wall time."""
        self._up.put(("ready", self.index, None))
        if not await asyncio.to_thread(self._go.wait, timeout):
            raise TimeoutError("the parent never said go")
        self.go_at = time.time()
        self._cpu_at_go = _cpu_seconds()
        return self.go_at

    def done(self) -> None:
        """The active phase of this worker is over (it still waits for *stop*)."""
        self._up.put(("done", self.index, None))

    def snapshot(self) -> Stats:
        for collect in self.collectors:
            collect()
        self.stats.counters["client_cpu_seconds"] = _cpu_seconds() - self._cpu_at_go
        return self.stats

    async def _report(self) -> None:
        next_report = time.monotonic() + PROGRESS_EVERY
        while True:
            await asyncio.sleep(0.1)
            if self._stop.is_set():
                self.stopping.set()
            if time.monotonic() >= next_report:
                next_report += PROGRESS_EVERY
                self._up.put(("progress", self.index, self.snapshot()))

    async def sleep_until_stop(self, seconds: float | None = None) -> None:
        """Sleep ``seconds`` (or forever) or until the parent says stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()


class Role(Protocol):
    """One kind of client population inside a worker (viewers, calls, idle sockets).

    Constructed as ``Role(ctx, params)``. ``setup`` connects (before *go*,
    unmeasured), ``run`` is the measured active phase and returns when its
    work is over, ``close`` releases every socket. None of them may raise
    for a client's failure: failures are counted in ``ctx.stats``.
    """

    async def setup(self) -> None: ...
    async def run(self) -> None: ...
    async def close(self) -> None: ...


async def run_roles(ctx: WorkerContext) -> None:
    """The worker coroutine: ``params["roles"]`` is a list of role params, each
    naming its class as ``"role": "module:Class"``; all set up, then all run."""
    roles: list[Role] = []
    for spec in ctx.params["roles"]:
        module_name, _, class_name = str(spec["role"]).partition(":")
        roles.append(getattr(importlib.import_module(module_name), class_name)(ctx, spec))
    try:
        await asyncio.gather(*(role.setup() for role in roles))
        await ctx.ready()
        await asyncio.gather(*(role.run() for role in roles))
        ctx.done()
        await ctx.sleep_until_stop()
    finally:
        await asyncio.gather(*(role.close() for role in roles), return_exceptions=True)


ROLES_WORKER = "loadtest.workers:run_roles"


async def _worker_async(spec: WorkerSpec, up: Any, go: MpEvent, stop: MpEvent) -> None:
    module_name, _, function_name = spec.target.partition(":")
    worker: Callable[[WorkerContext], Awaitable[None]] = getattr(
        importlib.import_module(module_name), function_name
    )
    ctx = WorkerContext(spec, up, go, stop)
    reporter = asyncio.get_running_loop().create_task(ctx._report())
    try:
        await worker(ctx)
    finally:
        reporter.cancel()
    up.put(("final", spec.index, ctx.snapshot()))


def _worker_main(spec: WorkerSpec, up: Any, go: MpEvent, stop: MpEvent) -> None:
    try:
        run_loop(_worker_async(spec, up, go, stop))
    except BaseException:
        up.put(("crash", spec.index, traceback.format_exc()))


class FleetError(Exception):
    """A worker crashed or missed a deadline (message has the reason)."""


@dataclass
class Fleet:
    """The parent's handle on the worker processes of one run."""

    target: str
    params: list[dict[str, Any]]
    ready: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    latest: dict[int, Stats] = field(default_factory=dict)
    finals: dict[int, Stats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        context = mp.get_context("spawn")
        self._up: Any = context.Queue()
        self._go = context.Event()
        self._stop = context.Event()
        self._processes = [
            context.Process(
                target=_worker_main,
                args=(WorkerSpec(i, self.target, p), self._up, self._go, self._stop),
                daemon=True,
                name=f"loadtest-worker-{i}",
            )
            for i, p in enumerate(self.params)
        ]

    def __len__(self) -> int:
        return len(self._processes)

    def start(self) -> None:
        for process in self._processes:
            process.start()

    def poll(self) -> None:
        """Take every message waiting from the workers; raises FleetError on a crash."""
        while True:
            try:
                kind, index, payload = self._up.get_nowait()
            except queue.Empty:
                return
            if kind == "ready":
                self.ready.add(index)
            elif kind == "done":
                self.finished.add(index)
            elif kind == "progress":
                self.latest[index] = payload
            elif kind == "final":
                self.finals[index] = payload
                self.latest[index] = payload
                self.finished.add(index)
            elif kind == "crash":
                raise FleetError(f"worker {index} crashed:\n{payload}")

    async def wait_ready(self, timeout: float) -> None:
        """Until every worker is ready; FleetError on a crash, a dead worker or timeout."""
        deadline = time.monotonic() + timeout
        while len(self.ready) < len(self):
            self.poll()
            self._check_alive(self.ready)
            if time.monotonic() > deadline:
                raise FleetError(
                    f"only {len(self.ready)} of {len(self)} workers were ready after {timeout:.0f} s"
                )
            await asyncio.sleep(0.05)

    def _check_alive(self, waiting_for: set[int]) -> None:
        for i, process in enumerate(self._processes):
            if i not in waiting_for and i not in self.finals and not process.is_alive():
                self.poll()
                if i not in self.finals:
                    raise FleetError(f"worker {i} exited with status {process.exitcode}")

    def go(self) -> float:
        self._go.set()
        return time.time()

    @property
    def all_done(self) -> bool:
        return len(self.finished) >= len(self)

    def live(self) -> Stats:
        """The merge of the latest snapshot of every worker."""
        return merged(list(self.latest.values()))

    def stop(self) -> None:
        self._stop.set()

    async def finish(self, timeout: float = 60.0) -> Stats:
        """Set *stop*, wait for every final Stats (bounded) and reap the processes."""
        self.stop()
        deadline = time.monotonic() + timeout
        try:
            while len(self.finals) < len(self) and time.monotonic() < deadline:
                self.poll()
                with contextlib.suppress(FleetError):
                    self._check_alive(set())
                if all(not p.is_alive() for p in self._processes):
                    self.poll()
                    break
                await asyncio.sleep(0.05)
        finally:
            self.terminate()
        missing = len(self) - len(self.finals)
        total = merged(list(self.finals.values()))
        if missing:
            total.error("WORKER_LOST", missing)
        return total

    def terminate(self) -> None:
        """Stop every worker still running (used on errors and after finish)."""
        self._go.set()
        self._stop.set()
        for process in self._processes:
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()
                process.join(timeout=2)
