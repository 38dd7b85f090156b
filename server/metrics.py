"""Prometheus metrics, one registry per app (so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from protocol.base import type_tag
from protocol.codes import CloseCode, ErrorCode
from protocol.requests import CLIENT_REQUESTS

_KNOWN_TYPES = frozenset(type_tag(c) for c in CLIENT_REQUESTS)


class Metrics:
    """The server's instruments. Label values are bounded (known types and codes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections_open = Gauge(
            "digis_connections_open", "WebSockets currently open", registry=r
        )
        self.connections_total = Counter(
            "digis_connections_total", "WebSockets accepted", registry=r
        )
        self.closes = Counter(
            "digis_connection_closes_total",
            "Sockets closed by the server, by code",
            ["code"],
            registry=r,
        )
        self.messages_in = Counter(
            "digis_messages_in_total", "Requests received, by type", ["type"], registry=r
        )
        self.messages_out = Counter(
            "digis_messages_out_total", "Frames sent, by type", ["type"], registry=r
        )
        self.errors = Counter(
            "digis_errors_total", "Error envelopes sent, by code", ["code"], registry=r
        )
        self.actors = Gauge("digis_actors", "Live session actors, by kind", ["kind"], registry=r)
        self.flush_latency = Histogram(
            "digis_flush_seconds",
            "Time to write one batch of metered usage",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.flush_rows = Histogram(
            "digis_flush_rows",
            "Rows per usage flush",
            buckets=(1, 10, 100, 1000, 5000, 10000, 50000),
            registry=r,
        )
        self.ledger_batch = Histogram(
            "digis_ledger_batch_ops",
            "Ledger operations per committed batch",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.ledger_latency = Histogram(
            "digis_ledger_batch_seconds",
            "Time to commit one ledger batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.slow_consumers = Counter(
            "digis_slow_consumers_total", "Sockets closed as slow consumers", registry=r
        )
        self.rate_limited = Counter(
            "digis_rate_limited_total",
            "Requests refused by rate limits, by limit",
            ["limit"],
            registry=r,
        )
        for code in ErrorCode:
            self.errors.labels(code.value)
        for kind in ("call", "stream"):
            self.actors.labels(kind)
        for close in CloseCode:
            self.closes.labels(str(int(close)))

    def batch_committed(self, ops: int, seconds: float) -> None:
        """Ledger observer: one batch of ``ops`` committed in ``seconds``."""
        self.ledger_batch.observe(ops)
        self.ledger_latency.observe(seconds)

    def request_label(self, type_name: str) -> str:
        return type_name if type_name in _KNOWN_TYPES else "unknown"

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
