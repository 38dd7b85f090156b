"""What a load run counts: counters, errors by code, latency histograms, checks.

A :class:`Stats` lives in each worker process and is merged in the parent;
every part is mergeable without keeping raw samples, so a run of millions
of deliveries ships a few kilobytes between processes.

:class:`Histogram` buckets values (milliseconds) on a logarithmic scale with
2 % growth per bucket: a reported percentile is within about 1 % of the
true sample value (and never outside the observed min..max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
#: Values at or below this many milliseconds share bucket 0.
_FLOOR_MS = 0.001
MAX_FAILURE_SAMPLES = 20


class Histogram:
    """A mergeable log-bucketed histogram of non-negative values in milliseconds."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    def record(self, value: float) -> None:
        """Add one observation; negative values count as 0."""
        if value <= _FLOOR_MS:
            value = max(value, 0.0)
            index = 0
        else:
            index = int(math.log(value / _FLOOR_MS) / _LOG_GROWTH) + 1
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def merge(self, other: Histogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100); 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * q / 100.0))
        if rank >= self.count:
            return self.maximum
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = 0.0 if index == 0 else _FLOOR_MS * _GROWTH ** (index - 0.5)
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum

    def since(self, earlier: Histogram) -> Histogram:
        """What was recorded after ``earlier`` (an older state of this histogram).

        The interval's min and max are known only to bucket precision.
        """
        out = Histogram()
        for index, n in self.buckets.items():
            grown = n - earlier.buckets.get(index, 0)
            if grown > 0:
                out.buckets[index] = grown
                out.count += grown
        if out.count:
            low, high = min(out.buckets), max(out.buckets)
            out.minimum = 0.0 if low == 0 else _FLOOR_MS * _GROWTH ** (low - 1)
            out.maximum = min(self.maximum, _FLOOR_MS * _GROWTH**high)
            out.total = self.total - earlier.total
        return out

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self) -> dict[str, float]:
        """``count``, ``p50``, ``p95``, ``p99``, ``max`` and ``mean`` (milliseconds)."""
        return {
            "count": float(self.count),
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "max": self.maximum,
            "mean": self.mean,
        }


@dataclass
class Check:
    """An exact consistency check evaluated many times (e.g. once per call)."""

    passed: int = 0
    failed: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0


@dataclass
class Stats:
    """Everything one worker (or, merged, the whole run) measured."""

    counters: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    #: Earliest (``first``) and latest (``last``) wall-clock times of named moments.
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def get(self, name: str) -> float:
        return self.counters.get(name, 0)

    def error(self, code: str, n: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + n

    def histogram(self, name: str) -> Histogram:
        found = self.histograms.get(name)
        if found is None:
            found = self.histograms[name] = Histogram()
        return found

    def observe(self, name: str, value_ms: float) -> None:
        self.histogram(name).record(value_ms)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        entry = self.checks.get(name)
        if entry is None:
            entry = self.checks[name] = Check()
        if ok:
            entry.passed += 1
        else:
            entry.failed += 1
            if len(entry.samples) < MAX_FAILURE_SAMPLES:
                entry.samples.append(detail)

    def moment(self, name: str, at: float) -> None:
        """Remember ``at`` as a time of ``name`` (earliest and latest are kept)."""
        if at < self.first.get(name, math.inf):
            self.first[name] = at
        if at > self.last.get(name, -math.inf):
            self.last[name] = at

    def merge(self, other: Stats) -> None:
        for name, value in other.counters.items():
            self.add(name, value)
        for code, n in other.errors.items():
            self.error(code, n)
        for name, hist in other.histograms.items():
            self.histogram(name).merge(hist)
        for name, check in other.checks.items():
            mine = self.checks.setdefault(name, Check())
            mine.passed += check.passed
            mine.failed += check.failed
            room = MAX_FAILURE_SAMPLES - len(mine.samples)
            mine.samples.extend(check.samples[: max(0, room)])
        for name, at in other.first.items():
            self.moment(name, at)
        for name, at in other.last.items():
            self.moment(name, at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (histograms as their summaries)."""
        return {
            "counters": dict(sorted(self.counters.items())),
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": {name: h.summary() for name, h in sorted(self.histograms.items())},
            "checks": {
                name: {"passed": c.passed, "failed": c.failed, "samples": c.samples}
                for name, c in sorted(self.checks.items())
            },
        }


def merged(parts: list[Stats]) -> Stats:
    """A new Stats that is the merge of ``parts``."""
    total = Stats()
    for part in parts:
        total.merge(part)
    return total
