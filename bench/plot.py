"""The plot of a run: messages/s against concurrent sessions, one line per system.

In: ``Results`` with rates, and the path of a PNG. Out: the PNG (log-log, the median of
each point, bars from min to max), or False when matplotlib is not installed (it is
optional: ``pip install '.[bench]'``, imported only here and only for ``--plot``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.procs import log
from bench.results import LAB, POSTFIX, SQLITE, RateAt, Results

STORED = {LAB: " (accepted = delivered)", SQLITE: " (accepted = stored)"}


def bars(by: dict[str, RateAt], key: str) -> dict[str, Any]:
    """errorbar's arguments for one system's ``key`` (a summary) against sessions."""
    xs = sorted(int(s) for s in by)
    mid = [by[str(s)][key]["median"] for s in xs]  # type: ignore[literal-required]
    low = [m - by[str(s)][key]["min"]  # type: ignore[literal-required]
           for m, s in zip(mid, xs, strict=True)]
    high = [by[str(s)][key]["max"] - m  # type: ignore[literal-required]
            for m, s in zip(mid, xs, strict=True)]
    return {"x": xs, "y": mid, "yerr": [low, high], "capsize": 3}


def plot(results: Results, path: Path) -> bool:
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    rates = results.get("rates", {})
    for name, by in rates.items():
        ax.errorbar(**bars(by, "accepted_rate"), marker="o",
                    label=name + STORED.get(name, " (accepted)"))
        if name == POSTFIX:
            ax.errorbar(**bars(by, "e2e_rate"), marker="x", linestyle="--",
                        label=f"{name} (end to end)")
    ax.set_xscale("log")
    xs_all = sorted({int(s) for by in rates.values() for s in by})
    ax.set_xticks(xs_all)
    ax.set_xticklabels([str(x) for x in xs_all])
    ax.set_xlabel("concurrent SMTP sessions")
    ax.set_ylabel("messages/s")
    ax.set_yscale("log")
    m = results["machine"]
    ax.set_title(f"Rate vs sessions, {results['config']['size']} B bodies, "
                 f"{results['config']['load']} ({m['nproc']} cores, {m['cpu_model'][:30]});"
                 "\nmedian, bars: min-max of the runs", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
