"""The issue's targets checked against a run's results.

In: ``Results`` (a fresh run, or an earlier ``--out`` read back). Out: one ``Target``
per target, with the value measured, its limit and the verdict (None: not measured).
"""

from __future__ import annotations

import contextlib
import statistics

from bench.results import (
    BARE,
    LAB,
    POSTFIX,
    TARGET_DEEP,
    TARGET_DRAIN_VS_BARE,
    TARGET_E2E_VS_BARE,
    TARGET_E2E_VS_POSTFIX,
    TARGET_HOP_VS_BARE,
    TARGET_METRICS_S,
    TARGET_QUEUES_S,
    TARGET_RSS_MB,
    TARGET_STARTUP_S,
    Deep,
    Results,
    Target,
)


def median_of(results: Results, system: str, key: str, sessions: int = 20) -> float | None:
    with contextlib.suppress(KeyError, TypeError):
        at = results["rates"][system][str(sessions)]
        return float(at[key]["median"])  # type: ignore[literal-required]
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def target(name: str, value: float | None, limit: float | None, *, above: bool,
           unit: str = "", note: str = "") -> Target:
    passed = None if value is None or limit is None else (
        value >= limit if above else value < limit)
    return Target(name, value, limit, unit, passed, note)


def rate_targets(results: Results) -> list[Target]:
    """1a, 1b, 2a and 2b: the lab's rates against bare aiosmtpd's and Postfix's."""
    lab_e2e = median_of(results, LAB, "e2e_rate")
    bare_rate = median_of(results, BARE, "accepted_rate")
    pf_e2e = median_of(results, POSTFIX, "e2e_rate")
    out = [
        target("1a lab end to end / bare aiosmtpd", ratio(lab_e2e, bare_rate),
               TARGET_E2E_VS_BARE, above=True, unit="x"),
        target("1b lab end to end / Postfix end to end", ratio(lab_e2e, pf_e2e),
               TARGET_E2E_VS_POSTFIX, above=True, unit="x"),
    ]
    for mode, label, limit in (("local", "2a release drain, local", TARGET_DRAIN_VS_BARE),
                               ("hop", "2b release drain, SMTP hop", TARGET_HOP_VS_BARE)):
        drains = [d for d in results.get("drain", []) if d["mode"] == mode]
        if drains:
            worst = min(drains, key=lambda d: d["rate"])
            out.append(target(
                f"{label} / bare aiosmtpd", ratio(worst["rate"], bare_rate),
                limit, above=True, unit="x",
                note="slowest size: " + ", ".join(f"{d['messages']}: {d['rate']:.0f}/s"
                                                  for d in drains)))
    return out


def deep_targets(deep: Deep, bare_rate: float | None) -> list[Target]:
    """3, 4a and 4b (and 2a for the deep queue released at once)."""
    biggest = deep["clone"]["reads"] if "clone" in deep else deep["restarted"]
    queued = biggest["deferred"]
    peak = max(deep["loaded"]["vm_mb"].get("VmHWM", 0), deep["restarted"]["vm_mb"].get(
        "VmHWM", 0), biggest["vm_mb"].get("VmHWM", 0))
    size_note = f"at {queued} queued" + ("" if queued >= TARGET_DEEP else
                                         f" (target is at {TARGET_DEEP})")
    out = [target("3 peak RSS with the deep queue", peak, TARGET_RSS_MB, above=False,
                  unit="MB", note=size_note + " (queued and read)")]
    if "release" in deep:
        rel = deep["release"]
        out.append(target("3 peak RSS releasing the deep queue", rel["vm_mb"].get("VmHWM"),
                          TARGET_RSS_MB, above=False, unit="MB",
                          note=f"{rel['messages']} released at once"))
        out.append(target("2a release drain, local, deep queue / bare aiosmtpd",
                          ratio(rel["rate"], bare_rate), TARGET_DRAIN_VS_BARE, above=True,
                          unit="x",
                          note=f"{rel['messages']} released at once: {rel['rate']:.0f}/s"))
    out.append(target("4a /metrics scrape (max)", biggest["metrics_s"]["max"], TARGET_METRICS_S,
                      above=False, unit="s", note=size_note))
    out.append(target("4b mailflow queues (max)", biggest["cli_queues_s"]["max"],
                      TARGET_QUEUES_S, above=False, unit="s", note=size_note))
    return out


def targets(results: Results) -> list[Target]:
    out = rate_targets(results)
    if "deep" in results:
        out += deep_targets(results["deep"], median_of(results, BARE, "accepted_rate"))
    if "startup" in results:
        starts = results["startup"]["all_s"]
        out.append(target(
            "5 startup to /healthz (max)", max(starts), TARGET_STARTUP_S, above=False, unit="s",
            note=f"median {statistics.median(starts):.2f} s over {len(starts)}"
                 " starts (fresh and existing data directories)"))
    return out
