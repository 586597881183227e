"""``GET /metrics``: what the people on call watch, in the Prometheus text exposition format.

Two kinds of values:

- counted by this service process as it serves (reset when it restarts, as Prometheus
  counters are): statements minted, mints refused, mint latency, failed key maintenance;
- read from the issuer's state at each scrape (so statements minted with the CLI and keys
  rotated by another process show up too): key age, time to the next scheduled rotation,
  status list fill, log size.

docs/operations.md lists every metric with alert examples.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from issuer.core.authority import Authority
from issuer.core.errors import IssuerError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; a mint is one signature and one fsynced commit, shared by a group of requests.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class StateCollector(Collector):
    """Gauges read from the keystore and the audit database when Prometheus scrapes."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = self.authority.now()
        yield from self._keys(now)
        yield from self._status_lists()
        yield self._log_size()

    def _keys(self, now: int) -> Iterable[GaugeMetricFamily]:
        age = GaugeMetricFamily("issuer_key_age_seconds",
                                "Seconds since the key was created, for active and next keys",
                                labels=["kid", "state"])
        for key in self.authority.keystore.keys():
            if key.state in ("active", "next"):
                age.add_metric([key.kid, key.state], now - key.created_at)
        yield age
        due = self.authority.keys.rotation_due_at()
        if due is not None:  # no rotation_period: no schedule to watch
            yield GaugeMetricFamily("issuer_key_rotation_due_seconds",
                                    "Seconds until the scheduled key rotation is due "
                                    "(negative: overdue, the scheduled rotation did not happen)",
                                    value=due - now)

    def _status_lists(self) -> Iterable[GaugeMetricFamily]:
        used = GaugeMetricFamily("issuer_status_list_entries_used",
                                 "Entries handed out in each Token Status List", labels=["list"])
        fill = GaugeMetricFamily("issuer_status_list_fill_ratio",
                                 "Fraction of each Token Status List handed out", labels=["list"])
        for list_id, size, counter in self.authority.audit.read(
                "SELECT id, size, next_counter FROM status_lists ORDER BY created_at, id"):
            used.add_metric([list_id], counter)
            fill.add_metric([list_id], counter / size)
        yield used
        yield fill

    def _log_size(self) -> GaugeMetricFamily:
        rows = self.authority.audit.read("SELECT MAX(tree_size) FROM log_checkpoints")
        return GaugeMetricFamily("issuer_log_tree_size",
                                 "Entries in the transparency log (its newest signed checkpoint)",
                                 value=int(rows[0][0] or 0))


class Metrics:
    """The service's metrics, in a registry of their own (one per app)."""

    def __init__(self, authority: Authority) -> None:
        self.registry = CollectorRegistry()
        self.minted = Counter("issuer_statements_minted", "Statements minted by this service",
                              ["template", "channel"], registry=self.registry)
        self.refused = Counter("issuer_mint_refusals", "Mint requests refused, by error code",
                               ["reason"], registry=self.registry)
        self.latency = Histogram("issuer_mint_duration_seconds",
                                 "Seconds from a mint request to its committed statement",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.maintenance_failures = Counter(
            "issuer_key_maintenance_failures",
            "Scheduled key maintenance runs (rotation, expiry) that failed",
            registry=self.registry)
        self.registry.register(StateCollector(authority))

    def refusal(self, error: IssuerError) -> None:
        self.refused.labels(reason=error.error).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
