"""``mailflow.metrics.Metrics`` alone, on a fresh ``CollectorRegistry`` each: which series a
fact, a rejection and the store move, read with ``registry.get_sample_value``.

tests/test_metrics.py checks the scraped page of a running lab (names, labels, formats,
promtool); this file checks the arithmetic behind it, one call at a time.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from mailflow import __version__
from mailflow.metrics import DEFERRAL_BUCKETS, LATENCY_BUCKETS, MOVE_BUCKETS, Metrics
from mailflow.moves.states import MoveStatus
from mailflow.runtime.lab import Lab
from stores.backend import Fact
from tests.helpers import hold_move, send

ALICE = "alice@contoso.test"

# Fact kind, its labels, and the counter it adds to.
COUNTED = [
    ("accepted", {"server": "EX2003-A"}, "mailflow_smtp_messages_accepted_total"),
    ("store_failure", {"server": "EX2003-A", "error": "MAPI_E_DISK_FULL"},
     "mailflow_store_delivery_failures_total"),
    ("deferred", {"server": "EX2003-A", "queue": "deferred"}, "mailflow_messages_deferred_total"),
    ("released", {"server": "EX55-LON", "queue": "holding"}, "mailflow_messages_released_total"),
    ("delivered", {"server": "EX2003-B"}, "mailflow_messages_delivered_total"),
    ("rerouted", {"server": "EX2003-A", "transport": "smtp"},
     "mailflow_messages_rerouted_total"),
    ("ndr", {"server": "EX2003-A", "status": "5.1.1"}, "mailflow_ndrs_total"),
    ("mta_failure", {"server": "EX55-LON", "target": "EX2003-A", "event_id": "9322"},
     "mailflow_mta_connection_failures_total"),
]
# Fact kind, its labels, the histogram it observes into, and that histogram's buckets.
OBSERVED = [
    ("deferral", {"server": "EX2003-B"}, "mailflow_deferral_seconds", DEFERRAL_BUCKETS),
    ("delivery_latency", {"server": "EX2003-A"}, "mailflow_delivery_latency_seconds",
     LATENCY_BUCKETS),
    ("move_duration", {"engine": "mrs2010"}, "mailflow_move_duration_seconds", MOVE_BUCKETS),
]


def mailflow_samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                          float]:
    """Every mailflow_* sample but the _created timestamps, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect() if family.name.startswith("mailflow_")
        for s in family.samples if not s.name.endswith("_created")
    }


@pytest.mark.parametrize(("kind", "labels", "name"), COUNTED)
def test_a_counted_fact_adds_its_value_to_its_own_series(
    kind: str, labels: dict[str, str], name: str
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert registry.get_sample_value(name, labels) is None  # no series before its first fact

    metrics.observe([Fact(kind, labels), Fact(kind, labels, 2.0)])

    assert registry.get_sample_value(name, labels) == 3.0
    other = {key: f"{value}-other" for key, value in labels.items()}
    assert registry.get_sample_value(name, other) is None
    # Nothing else moved: one series, in one family.
    assert [key for key in mailflow_samples(registry) if key[0] != "mailflow_build_info"] == [
        (name, tuple(sorted(labels.items())))]


@pytest.mark.parametrize(("kind", "labels", "name", "buckets"), OBSERVED)
def test_an_observed_fact_lands_in_its_bucket(
    kind: str, labels: dict[str, str], name: str, buckets: tuple[float, ...]
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    low, high = buckets[0] / 2, buckets[1] + 1  # under the first bound; over the second

    metrics.observe([Fact(kind, labels, low), Fact(kind, labels, high)])

    assert registry.get_sample_value(f"{name}_count", labels) == 2
    assert registry.get_sample_value(f"{name}_sum", labels) == low + high
    assert registry.get_sample_value(f"{name}_bucket", {**labels, "le": str(buckets[0])}) == 1
    assert registry.get_sample_value(f"{name}_bucket", {**labels, "le": str(buckets[1])}) == 1
    assert registry.get_sample_value(f"{name}_bucket", {**labels, "le": str(buckets[2])}) == 2
    assert registry.get_sample_value(f"{name}_bucket", {**labels, "le": "+Inf"}) == 2


def test_facts_that_are_only_wake_ups_count_nothing() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    before = mailflow_samples(registry)

    metrics.observe([Fact("link", {"server": "EX2003-A", "target": "EX2003-B"}),
                     Fact("smarthost", {"server": "EX2003-A"})])

    assert mailflow_samples(registry) == before


def test_a_rejection_counts_by_server_and_reply_code() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics.rejected("EX2003-A", 550)
    metrics.rejected("EX2003-A", 550)
    metrics.rejected("EX2003-A", 421)

    name = "mailflow_smtp_rejections_total"
    assert registry.get_sample_value(name, {"server": "EX2003-A", "code": "550"}) == 2
    assert registry.get_sample_value(name, {"server": "EX2003-A", "code": "421"}) == 1
    assert registry.get_sample_value(name, {"server": "EX2003-B", "code": "550"}) is None


def test_two_registries_count_apart() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).rejected("EX2003-A", 550)
    Metrics(second)
    labels = {"server": "EX2003-A", "code": "550"}
    assert first.get_sample_value("mailflow_smtp_rejections_total", labels) == 1
    assert second.get_sample_value("mailflow_smtp_rejections_total", labels) is None
    assert second.get_sample_value("mailflow_build_info", {"version": __version__}) == 1


def watching(lab: Lab) -> CollectorRegistry:
    """A fresh registry whose Metrics reads the gauges from ``lab``'s store."""
    registry = CollectorRegistry()
    Metrics(registry).watch_store(lab.scenario, lab.store.read_sync, lab.clock.now)
    return registry


async def test_the_store_gauges_of_an_idle_lab_are_all_zero(lab: Lab) -> None:
    registry = watching(lab)
    for server in lab.scenario.servers:
        assert registry.get_sample_value("mailflow_mailboxes_in_transit",
                                         {"server": server.name}) == 0
    for status in MoveStatus:
        assert registry.get_sample_value("mailflow_moves", {"status": status.value}) == 0
    local = {"server": "EX2003-A", "queue": "local"}
    assert registry.get_sample_value("mailflow_queue_messages", local) == 0
    assert registry.get_sample_value("mailflow_queue_oldest_message_age_seconds", local) == 0


async def test_the_store_gauges_follow_the_store_at_each_read(lab: Lab) -> None:
    registry = watching(lab)
    deferred = {"server": "EX2003-A", "queue": "deferred"}

    await hold_move(lab, ALICE, "EX2003-B")
    await send(lab, "EX2003-A", ALICE, subject="parked")
    await lab.settle()
    await lab.advance(90)

    assert registry.get_sample_value("mailflow_moves", {"status": "InProgress"}) == 1
    assert registry.get_sample_value("mailflow_mailboxes_in_transit",
                                     {"server": "EX2003-A"}) == 1
    assert registry.get_sample_value("mailflow_queue_messages", deferred) == 1
    assert registry.get_sample_value("mailflow_queue_oldest_message_age_seconds", deferred) == 90
    assert registry.get_sample_value("mailflow_queue_message_age_seconds_sum", deferred) == 90
    assert registry.get_sample_value("mailflow_queue_message_age_seconds_bucket",
                                     {**deferred, "le": "300.0"}) == 1
