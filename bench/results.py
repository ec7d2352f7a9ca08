"""The shapes of the benchmark's results, as the report reads them and the JSON holds them.

In: nothing (types and the issue's targets). Out: ``Results`` and its parts, typed
dicts because the report reads both a fresh run and an earlier ``--out`` file
(``--from-json``) with the very same keys; ``Point`` and ``Target``, dataclasses for
what is computed here and written out with ``as_json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NotRequired, TypedDict

# The targets (ratios are of messages/s measured in the same run). Issue 22 raised
# end to end from 0.7 and the hop drain from 0.7 (the local drain stays where issue 8 put it).
TARGET_E2E_VS_BARE = 1.0
TARGET_E2E_VS_POSTFIX = 1.3
TARGET_DRAIN_VS_BARE = 0.7
TARGET_HOP_VS_BARE = 1.5
TARGET_RSS_MB = 300.0
TARGET_METRICS_S = 0.25
TARGET_QUEUES_S = 1.0
TARGET_STARTUP_S = 1.5
TARGET_DEEP = 500_000

LAB = "mailflow lab"
BARE = "aiosmtpd bare"
SQLITE = "aiosmtpd+SQLite commit/msg"
POSTFIX = "Postfix (Maildir)"


class Summary(TypedDict):
    n: int
    median: NotRequired[float]
    min: NotRequired[float]
    max: NotRequired[float]
    cv_percent: NotRequired[float | None]


class Percentiles(TypedDict):
    p50: float | None
    p90: NotRequired[float | None]
    p99: float | None
    max: float | None


@dataclasses.dataclass
class Point:
    """One load run against one system."""

    sessions: int
    messages: int
    accepted_s: float
    accepted_rate: float
    loadavg_before: float
    e2e_s: float | None = None
    e2e_rate: float | None = None
    cpu_ms_per_msg: float | None = None

    def as_json(self) -> dict[str, Any]:
        """Its fields; those not measured are left out, as the JSON always had them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class RateAt(TypedDict):
    accepted_rate: Summary
    cpu_ms_per_msg: NotRequired[Summary]
    e2e_rate: NotRequired[Summary]
    runs: list[dict[str, Any]]


class LoadgenDoc(TypedDict):
    elapsed: float
    sent: int
    refused: int
    errors: list[str]
    rate: float
    latency_ms: Percentiles


class LatencyEntry(TypedDict):
    client_ms: Percentiles
    rate: float
    sent: int
    refused: int
    postfix_delay_ms: NotRequired[Percentiles]


class Latency(TypedDict):
    generator: str
    messages: int
    systems: dict[str, LatencyEntry]


class Parked(TypedDict):
    messages: int
    accepted_s: float
    accepted_rate: float
    rss_mb_curve: list[tuple[int, float]]
    chunk_rates: list[tuple[int, float]]


class Drain(TypedDict):
    mode: str
    messages: int
    action: str
    parked: Parked
    request_s: float
    drain_s: float
    rate: float
    cpu_ms_per_msg: float | None
    latency_ms: Percentiles | None
    queues_left: list[dict[str, Any]]
    vm_mb: dict[str, float]
    loadavg_before: float
    startup_s: float


class Reads(TypedDict):
    deferred: int
    expected: int
    metrics_s: Summary
    api_queues_s: Summary
    cli_queues_s: Summary
    vm_mb: dict[str, float]
    idle_cpu_percent: float | None


class Clone(TypedDict):
    target: int
    queued: int
    copy_s: float
    restart_s: float
    reads: Reads


class Release(TypedDict):
    messages: int
    request_s: float
    drain_s: float
    rate: float
    vm_mb_before: dict[str, float]
    vm_mb: dict[str, float]
    latency_ms: Percentiles | None


class Deep(TypedDict):
    messages: int
    startup_empty_s: float
    parked: Parked
    loaded: Reads
    restart_s: float
    restarted: Reads
    clone: NotRequired[Clone]
    release: NotRequired[Release]


class Startup(TypedDict):
    fresh_data_dir_s: float | None
    existing_data_dir_s: Summary
    all_s: list[float]


class Machine(TypedDict):
    nproc: int
    cpu_model: str
    memory: str
    kernel: str
    python: str
    aiosmtpd: str
    postfix: str
    loadavg_start: tuple[float, float, float]
    loadavg_end: NotRequired[tuple[float, float, float]]


class Config(TypedDict):
    quick: bool
    messages: int
    sweep_messages: int
    repeats: int
    sessions: list[int]
    size: int
    load: str
    latency_messages: int
    drain: list[int]
    deep: int
    deep_clone: int
    systems: list[str]
    store: NotRequired[str]  # sqlite or postgresql (runs before issue 22: sqlite)


class Results(TypedDict):
    command: str
    started: str
    machine: Machine
    config: Config
    rates: NotRequired[dict[str, dict[str, RateAt]]]
    latency: NotRequired[Latency]
    lab_rates_vm_mb: NotRequired[dict[str, float]]
    lab_rates_startup_s: NotRequired[list[float]]
    drain: NotRequired[list[Drain]]
    deep: NotRequired[Deep]
    startup: NotRequired[Startup]
    targets: NotRequired[list[dict[str, Any]]]
    elapsed_s: NotRequired[float]


@dataclasses.dataclass
class Target:
    """One of the issue's targets: the value measured, the limit, and the verdict (None: not
    measured in this run)."""

    target: str
    value: float | None
    limit: float | None
    unit: str
    passed: bool | None
    note: str

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "value": self.value, "limit": self.limit,
                "unit": self.unit, "pass": self.passed, "note": self.note}
