"""Every Prometheus metric of the lab, declared once, on a registry passed in.

In: facts from committed writes (``observe``), SMTP rejections, and the
store, read at scrape time. Out: the ``mailflow_*`` series, plus the
``process_*`` and ``python_info`` series of the lab's process. Counters and
histograms count what happened since the lab started; gauges and the age
histogram of queued mail are computed from the store at every scrape, so they
cannot drift from the truth: each non-empty queue by a few range queries on its
``pairs_by_age`` index (one walk over its pairs, however deep), the mailboxes in
transit and the moves by one aggregate query each.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mailflow import __version__
from mailflow.moves.states import MoveStatus
from routing import queues
from routing.deferred import parking_queue
from stores import adc as stored_adc
from stores import databases, replicas
from stores.backend import Fact, Read
from stores.queue_ids import HOLDING
from stores.snapshot import AGE_BUCKETS, EMPTY, Snapshot, snapshot
from stores.topology import Scenario, Server

T = TypeVar("T")
Reader = Callable[[Callable[[Read], T]], T]

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Simulated seconds: deferrals last minutes to the 2-day expiry.
DEFERRAL_BUCKETS = (MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR,
                    12 * HOUR, DAY, 2 * DAY)
LATENCY_BUCKETS = (1.0, 5.0, 15.0, MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR,
                   4 * HOUR, 12 * HOUR, DAY, 2 * DAY)
MOVE_BUCKETS = (MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR,
                8 * HOUR, DAY)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ns = "mailflow"
        self.accepted = Counter("smtp_messages_accepted", "Messages accepted with 250 by an"
                                " SMTP endpoint.", ["server"], namespace=ns, registry=registry)
        self.rejections = Counter("smtp_rejections", "SMTP commands refused, by reply code.",
                                  ["server", "code"], namespace=ns, registry=registry)
        self.store_failures = Counter("store_delivery_failures", "Local deliveries the store"
                                      " driver refused, by MAPI error.", ["server", "error"],
                                      namespace=ns, registry=registry)
        self.deferred = Counter("messages_deferred", "Recipients parked because their mailbox"
                                " was in transit.", ["server", "queue"], namespace=ns,
                                registry=registry)
        self.released = Counter("messages_released", "Parked recipients released when"
                                " PR_IN_TRANSIT was cleared.", ["server", "queue"], namespace=ns,
                                registry=registry)
        self.delivered = Counter("messages_delivered", "Recipients delivered into a mailbox.",
                                 ["server"], namespace=ns, registry=registry)
        self.rerouted = Counter("messages_rerouted", "Recipients carried to another server,"
                                " by transport.", ["server", "transport"], namespace=ns,
                                registry=registry)
        self.ndrs = Counter("ndrs", "Non-delivery reports generated, by DSN status code.",
                            ["server", "status"], namespace=ns, registry=registry)
        self.mta_failures = Counter("mta_connection_failures", "Failed MTA opens (RPC binds),"
                                    " by target server and the event logged.",
                                    ["server", "target", "event_id"], namespace=ns,
                                    registry=registry)
        self.deferral = Histogram("deferral_seconds", "Simulated seconds from the first"
                                  " ecMailboxInTransit refusal to delivery.", ["server"],
                                  namespace=ns, registry=registry, buckets=DEFERRAL_BUCKETS)
        self.latency = Histogram("delivery_latency_seconds", "Simulated seconds from"
                                 " acceptance to delivery.", ["server"], namespace=ns,
                                 registry=registry, buckets=LATENCY_BUCKETS)
        self.move_duration = Histogram("move_duration_seconds", "Simulated seconds a completed"
                                       " move took.", ["engine"], namespace=ns,
                                       registry=registry, buckets=MOVE_BUCKETS)
        self.scheduler_errors = Counter("scheduler_errors", "Pieces of scheduled work that"
                                        " failed (each is retried at the next tick), by work.",
                                        ["work"], namespace=ns, registry=registry)
        self.faults_injected = Counter("faults_injected", "Faults injected by fault rules"
                                       " (mailflow.smtp.faults), by server and SMTP stage.",
                                       ["server", "stage"], namespace=ns, registry=registry)
        Info("build", "The mailflow version serving these metrics.", namespace=ns,
             registry=registry).info({"version": __version__})
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._counters: dict[str, Counter] = {
            "accepted": self.accepted,
            "store_failure": self.store_failures,
            "deferred": self.deferred,
            "released": self.released,
            "delivered": self.delivered,
            "rerouted": self.rerouted,
            "ndr": self.ndrs,
            "mta_failure": self.mta_failures,
            "fault_injected": self.faults_injected,
        }
        self._histograms: dict[str, Histogram] = {
            "deferral": self.deferral,
            "delivery_latency": self.latency,
            "move_duration": self.move_duration,
        }

    def observe(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            if (counter := self._counters.get(fact.kind)) is not None:
                counter.labels(**fact.labels).inc(fact.value)
            elif (histogram := self._histograms.get(fact.kind)) is not None:
                histogram.labels(**fact.labels).observe(fact.value)

    def scheduler_failed(self, work: str) -> None:
        self.scheduler_errors.labels(work=work).inc()

    def rejected(self, server: str, code: int) -> None:
        self.rejections.labels(server=server, code=str(code)).inc()

    def watch_store(self, scenario: Scenario, read: Reader[Any], now: Callable[[], float], *,
                    servers: Collection[str] | None = None,
                    leading: Callable[[], bool] = lambda: True) -> None:
        """Register the series computed from the store at every scrape, and start the flow
        counters of every server at 0, so that rates and alerts see the first message too.

        In a lab spread over processes (docs/scale-out.md) each exports the series of its
        ``servers``, and the organization-wide ones (moves, DAG copies, directories) come
        from the leader alone, so that every series is scraped from one process."""
        own = [s for s in scenario.servers if servers is None or s.name in servers]
        for server in own:
            self.accepted.labels(server=server.name)
            self.delivered.labels(server=server.name)
            parking = HOLDING if server.version.legacy_mta else parking_queue(server)
            self.deferred.labels(server=server.name, queue=parking)
            self.released.labels(server=server.name, queue=parking)
        self.registry.register(_StoreGauges(own, read, now, leading))
        if scenario.databases:
            self.registry.register(_Leaders(_DagGauges(read, now), leading))
        if scenario.mixed:
            self.registry.register(_Leaders(_DirectoryGauges(scenario, read), leading))


class _Leaders(Collector):
    """A collector of organization-wide series, collected in the leading process only."""

    def __init__(self, inner: Collector, leading: Callable[[], bool]) -> None:
        self.inner = inner
        self.leading = leading

    def collect(self) -> Iterable[Metric]:
        if self.leading():
            yield from self.inner.collect()


class _StoreGauges(Collector):
    def __init__(self, servers: list[Server], read: Reader[Any], now: Callable[[], float],
                 leading: Callable[[], bool]) -> None:
        self.servers = servers
        self.read = read
        self.now = now
        self.leading = leading

    def collect(self) -> Iterable[Metric]:
        now = self.now()
        names = [s.name for s in self.servers]
        snap: Snapshot = self.read(lambda db: snapshot(db, now, names))
        depth = GaugeMetricFamily("mailflow_queue_messages", "Recipients waiting in a queue.",
                                  labels=["server", "queue"])
        oldest = GaugeMetricFamily("mailflow_queue_oldest_message_age_seconds",
                                   "Simulated age of the oldest recipient in a queue.",
                                   labels=["server", "queue"])
        ages = HistogramMetricFamily("mailflow_queue_message_age_seconds",
                                     "Simulated ages of the recipients queued now (qshape).",
                                     labels=["server", "queue"])
        keys = {(s.name, q) for s in self.servers for q in queues.standard_queues(s)}
        for server, queue in sorted(keys | set(snap.queues)):
            queued = snap.queues.get((server, queue), EMPTY)
            depth.add_metric([server, queue], queued.depth)
            oldest.add_metric([server, queue], 0.0 if queued.oldest_at is None
                              else max(0.0, now - queued.oldest_at))
            buckets = [(str(le), float(n)) for le, n in zip(AGE_BUCKETS, queued.within,
                                                             strict=True)]
            ages.add_metric([server, queue], [*buckets, ("+Inf", float(queued.depth))],
                            queued.age_sum)
        in_transit = GaugeMetricFamily("mailflow_mailboxes_in_transit", "Mailboxes whose"
                                       " PR_IN_TRANSIT flag is set, by store.", labels=["server"])
        for name in names:
            in_transit.add_metric([name], snap.in_transit.get(name, 0))
        yield from (depth, oldest, ages, in_transit)
        if self.leading():
            moves = GaugeMetricFamily("mailflow_moves", "Move requests by status.",
                                      labels=["status"])
            for status in MoveStatus:
                moves.add_metric([status.value], snap.moves.get(status.value, 0))
            yield moves




class _DagGauges(Collector):
    """Issue 19: DAG copies and the moves their data guarantee holds, read at each scrape."""

    def __init__(self, read: Reader[Any], now: Callable[[], float]) -> None:
        self.read = read
        self.now = now

    def collect(self) -> Iterable[Metric]:
        found = self.read(databases.all_databases)
        stalls: list[float] = self.read(databases.ha_stalls_since)
        labels = ["database", "server"]
        copy_queue = GaugeMetricFamily("mailflow_database_copy_queue_length", "Log files a"
                                       " DAG copy has yet to copy (0 on the active copy).",
                                       labels=labels)
        mounted = GaugeMetricFamily("mailflow_database_mounted", "1 on the server whose copy"
                                    " of the database is active and mounted, else 0.",
                                    labels=labels)
        for database in found:
            for copy in database.copies:
                copy_queue.add_metric([database.name, copy.server], copy.copy_queue)
                mounted.add_metric([database.name, copy.server],
                                   int(copy.active and database.mounted))
        stalled = GaugeMetricFamily("mailflow_moves_stalled_due_to_ha", "Move requests the"
                                    " data guarantee holds (StalledDueToHA or"
                                    " DataReplicationWait).")
        stalled.add_metric([], len(stalls))
        longest = GaugeMetricFamily("mailflow_move_ha_stall_longest_seconds", "Simulated"
                                    " seconds the longest current data-guarantee stall lasts.")
        longest.add_metric([], max((self.now() - since for since in stalls), default=0.0))
        yield from (copy_queue, mounted, stalled, longest)
class _DirectoryGauges(Collector):
    """Mixed mode (issue 17): stubs per site's 5.5 directory, and per ADC agreement what it
    would replicate now and when it last ran (simulated time), read at every scrape."""

    def __init__(self, scenario: Scenario, read: Reader[Any]) -> None:
        self.scenario = scenario
        self.read = read

    def _read(self, db: Read) -> tuple[dict[str, int], list[tuple[str, int, float | None]]]:
        runs = [(a.name, stored_adc.pending(db, a.site, [s.name for s in self.scenario.servers
                                                        if s.site == a.site]), a.last_run)
                for a in stored_adc.agreements(db)]
        return replicas.stub_counts(db), runs

    def collect(self) -> Iterable[Metric]:
        stubs, runs = self.read(self._read)
        stub_gauge = GaugeMetricFamily("mailflow_directory_stubs", "Stub objects in a site's"
                                       " 5.5 directory (cross-site moves not yet cleaned up).",
                                       labels=["site"])
        for site in self.scenario.sites:
            stub_gauge.add_metric([site], stubs.get(site, 0))
        pending = GaugeMetricFamily("mailflow_adc_pending_changes", "Changes an ADC connection"
                                    " agreement would replicate if it ran now.",
                                    labels=["agreement"])
        last = GaugeMetricFamily("mailflow_adc_last_run_timestamp_seconds", "Simulated time of"
                                 " an agreement's last run (0: never ran).", labels=["agreement"])
        for name, count, last_run in runs:
            pending.add_metric([name], count)
            last.add_metric([name], last_run or 0.0)
        yield from (stub_gauge, pending, last)
