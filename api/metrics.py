"""`/metrics` (§15): Prometheus text from prometheus-client, on the service's own registry.

Requests by route and status, their latency, the group commit's batch sizes; and, read from
the store when scraped (what `ledger status` and `projections status` read): the last
interest hour charged, the last sweep mark, the read models' lag behind the log.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # float-ok: seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def stamp(at: Optional[datetime]) -> float:  # float-ok: a Unix time for Prometheus
    return at.timestamp() if at is not None and at.year > 1 else 0.0  # float-ok


class StoreGauges(Collector):
    """Gauges read when scraped; ``read`` answers ``(last_hour, last_mark, lag)`` (lag None:
    the read models are not built)."""

    def __init__(self, read: Callable[[], tuple[Optional[datetime], Optional[datetime], Optional[int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        try:
            last_hour, last_mark, lag = self.read()
        except Exception:  # noqa: BLE001 - a store that does not answer: no gauges, /readyz says why
            return
        yield GaugeMetricFamily("ledger_interest_last_hour_seconds", "the last hour interest was charged for (Unix time)",
                                value=stamp(last_hour))
        yield GaugeMetricFamily("ledger_sweep_last_mark_seconds", "the last 5-minute mark swept (Unix time)",
                                value=stamp(last_mark))
        if lag is not None:
            yield GaugeMetricFamily("ledger_projection_lag_events", "events of the log the read models have not applied",
                                    value=lag)


class Metrics:
    def __init__(self, read: Callable[[], tuple[Optional[datetime], Optional[datetime], Optional[int]]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ledger_http_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("ledger_http_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batches = Histogram("ledger_group_commit_commands", "commands per group commit", buckets=BATCH_BUCKETS,
                                 registry=self.registry)
        self.registry.register(StoreGauges(read))

    def observe(self, route: str, status: int, seconds: float) -> None:  # float-ok: seconds
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
