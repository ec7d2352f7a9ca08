"""The report of a run as text: the tables printed at the end of ``bench/run.py``.

In: ``Results`` (a fresh run, or an earlier ``--out`` read back) and its ``Target``s.
Out: the text of the rates at 20 sessions, the sweep, latency, drains, the deep queue,
startup and the targets' verdicts.
"""

from __future__ import annotations

import statistics

from bench.results import BARE, POSTFIX, Deep, Results, Startup, Target
from bench.targets import median_of


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary_text(values: list[float], unit: str, digits: int = 0) -> str:
    if not values:
        return "-"
    return (f"median {statistics.median(values):.{digits}f} {unit},"
            f" min {min(values):.{digits}f}, max {max(values):.{digits}f}")


def rates_lines(results: Results, bare: float | None) -> list[str]:
    """The rates at 20 sessions, each against bare aiosmtpd and Postfix end to end."""
    rates = results.get("rates", {})
    pf = median_of(results, POSTFIX, "e2e_rate")
    config = results["config"]
    lines = [f"Rates at 20 sessions, {config['size']} B bodies, "
             f"{config['messages']} messages x {config['repeats']} "
             f"runs (median [min-max]), load: {config['load']},"
             f" the labs' store: {config.get('store', 'sqlite')}",
             f"{'system':30} {'accepted/s':>20} {'end to end/s':>20} {'/bare':>6} "
             f"{'/Postfix e2e':>12} {'CPU ms/msg':>10}"]
    for name, by in rates.items():
        at = by.get("20")
        if not at:
            continue
        acc = at["accepted_rate"]
        e2e = at.get("e2e_rate")
        main = (e2e or acc)["median"]
        e2e_cell = f"{fmt(e2e['median'])} [{fmt(e2e['min'])}-{fmt(e2e['max'])}]" if e2e else "-"
        cpu = at["cpu_ms_per_msg"].get("median") if "cpu_ms_per_msg" in at else None
        lines.append(
            f"{name:30} {fmt(acc['median']):>7} [{fmt(acc['min'])}-{fmt(acc['max'])}]"
            f" {e2e_cell:>20}"
            f" {fmt(main / bare if bare else None, 2):>6} {fmt(main / pf if pf else None, 2):>12}"
            f" {fmt(cpu, 2):>10}")
    lines.append("")
    return lines


def sweep_lines(results: Results) -> list[str]:
    rates = results.get("rates", {})
    sessions = sorted({int(s) for by in rates.values() for s in by})
    if not sessions:
        return []
    lines = ["Sweep (accepted msg/s; end to end in brackets where it differs):",
             f"{'system':30} " + " ".join(f"{s:>14}" for s in sessions)]
    for name, by in rates.items():
        cells = []
        for s in sessions:
            at = by.get(str(s))
            if not at:
                cells.append(f"{'-':>14}")
                continue
            cell = fmt(at["accepted_rate"]["median"])
            if "e2e_rate" in at and name in (POSTFIX,):
                cell += f" ({fmt(at['e2e_rate']['median'])})"
            cells.append(f"{cell:>14}")
        lines.append(f"{name:30} " + " ".join(cells))
    lines.append("")
    return lines


def latency_lines(results: Results) -> list[str]:
    lat = results["latency"]["systems"] if "latency" in results else {}
    if not lat:
        return []
    lines = ["Latency, MAIL to the 250 of DATA (bench/loadgen.py, 20 sessions):"]
    for name, entry in lat.items():
        c = entry["client_ms"]
        extra = ""
        if "postfix_delay_ms" in entry:
            d = entry["postfix_delay_ms"]
            extra = f"; Postfix delay= p50 {fmt(d['p50'], 0)} ms p99 {fmt(d['p99'], 0)} ms"
        lines.append(f"  {name:28} p50 {fmt(c['p50'], 1):>7} ms  p99 {fmt(c['p99'], 1):>7} ms"
                     f"  (at {fmt(entry['rate'])} msg/s){extra}")
    lines.append("")
    return lines


def drain_lines(results: Results, bare: float | None) -> list[str]:
    lines = []
    for d in results.get("drain", []):
        lat_ms = d["latency_ms"]
        lines.append(f"Release drain {d['mode']:5} {d['messages']:>7}: {fmt(d['rate']):>6} msg/s"
                     f" ({d['drain_s']:.2f} s, {d['action']} request {d['request_s']:.2f} s;"
                     f" release-to-delivery p50 {fmt(lat_ms['p50'] if lat_ms else None)} ms"
                     f" p99 {fmt(lat_ms['p99'] if lat_ms else None)} ms;"
                     f" {fmt(d.get('cpu_ms_per_msg'), 2)} CPU ms/msg)"
                     + (f" = {d['rate'] / bare:.2f} x bare" if bare else ""))
    return lines


def deep_lines(deep: Deep, bare: float | None) -> list[str]:
    lines = [""]
    stages = [("loaded over SMTP", deep["loaded"]), ("after restart", deep["restarted"])]
    if "clone" in deep:
        stages.append(("copied in SQL", deep["clone"]["reads"]))
    for label, r in stages:
        lines.append(
            f"Deep queue, {r['deferred']:>7} queued ({label}): /metrics "
            f"{fmt(r['metrics_s']['median'] * 1000)} ms"
            f" (max {fmt(r['metrics_s']['max'] * 1000)}),"
            f" GET /api/v1/queues {fmt(r['api_queues_s']['median'] * 1000)} ms,"
            f" mailflow queues {r['cli_queues_s']['median']:.2f} s,"
            f" RSS {fmt(r['vm_mb'].get('VmRSS'))} MB, peak {fmt(r['vm_mb'].get('VmHWM'))} MB,"
            f" idle CPU {fmt(r.get('idle_cpu_percent'))}%")
    if "release" in deep:
        rel = deep["release"]
        lines.append(f"Deep queue released (move failed, local delivery): {rel['messages']}"
                     f" in {rel['drain_s']:.1f} s = {fmt(rel['rate'])} msg/s"
                     + (f" = {rel['rate'] / bare:.2f} x bare" if bare else "")
                     + f"; peak RSS {fmt(rel['vm_mb'].get('VmHWM'))} MB"
                     f" (before: {fmt(rel['vm_mb_before'].get('VmHWM'))} MB)")
    lines.append(f"Deep queue parked at {fmt(deep['parked']['accepted_rate'])} msg/s;"
                 f" restart with it: {deep['restart_s']:.2f} s"
                 + (f"; with the SQL copy: {deep['clone']['restart_s']:.2f} s"
                    if "clone" in deep else ""))
    return lines


def startup_line(starts: Startup) -> str:
    return (f"Startup to /healthz: fresh data directory "
            f"{fmt(starts['fresh_data_dir_s'], 2)} s, existing "
            f"{fmt(starts['existing_data_dir_s'].get('median'), 2)} s (median); all"
            f" {len(starts['all_s'])} starts: " + summary_text(starts["all_s"], "s", 2))


def target_lines(targets: list[Target]) -> list[str]:
    lines = ["", "Targets:"]
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t.passed]
        op = ">=" if t.target[0] in "12" else "<"
        lines.append(f"  {verdict:4} {t.target:42} {fmt(t.value, 2):>8} {t.unit}"
                     f" (needs {op} {t.limit}) {t.note}")
    return lines


def table(results: Results, targets: list[Target]) -> str:
    bare = median_of(results, BARE, "accepted_rate")
    lines = [*rates_lines(results, bare), *sweep_lines(results), *latency_lines(results),
             *drain_lines(results, bare)]
    if "deep" in results:
        lines += deep_lines(results["deep"], bare)
    if "startup" in results:
        lines.append(startup_line(results["startup"]))
    return "\n".join([*lines, *target_lines(targets)])
