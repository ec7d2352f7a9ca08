"""Smoke runs of the benchmarks at tiny sizes: bench/run.py (issue 8) on a few hundred
messages, bench/migration.py (issue 22) on a few hundred mailboxes, bench/scaleout.py
(issue 22) on a few dozen messages.

The first checks that the harness starts the systems (Postfix aside), loads them, measures
the lab's drains, deep-queue reads and startup, stops everything and reports numbers; the
second that the migration moves every mailbox it was asked to, delivers the background
mail (some of it parked in ``deferred`` and released) and ends with a clean audit; the
third that scaleout's lab on PostgreSQL delivers every message it was sent.
Nothing about speed is asserted: the benchmarks themselves are not part of the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import orgs
from mailflow import scenarios
from tests.conftest import require_tool
from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def finished(harness: subprocess.Popen[str], name: str) -> tuple[str, str]:
    """The harness's output once it exits; SIGTERM (it stops what it started) if hung."""
    try:
        return harness.communicate(timeout=240)  # a hung harness, not a slow one
    except subprocess.TimeoutExpired:
        harness.terminate()
        _, stderr = harness.communicate(timeout=60)
        pytest.fail(f"{name} did not finish:\n{stderr[-4000:]}")


@pytest.mark.tools
def test_bench_quick_smoke_reports_numbers(tmp_path: Path) -> None:
    require_tool("smtp-source")
    out = tmp_path / "bench.json"
    harness = subprocess.Popen(
        # Postfix is left out (its start and stop alone take seconds): the smoke run stays
        # under 30 s. The benchmark proper measures it.
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick",
         "--systems", "smtp-sink,bare,sqlite,lab",
         "--sessions", "20", "--messages", "200", "--sweep-messages", "100", "--repeats", "1",
         "--latency-messages", "100", "--drain", "200", "--deep", "200",
         "--startup-repeats", "1", "--read-repeats", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    stdout, stderr = finished(harness, "bench/run.py")
    assert harness.returncode == 0, stderr[-4000:]
    assert "Targets:" in stdout
    doc = json.loads(out.read_text())

    rates = doc["rates"]
    assert {"aiosmtpd bare", "aiosmtpd+SQLite commit/msg", "mailflow lab"} <= set(rates)
    for name, by_sessions in rates.items():
        assert by_sessions["20"]["accepted_rate"]["median"] > 0, name
    assert rates["mailflow lab"]["20"]["e2e_rate"]["median"] > 0

    assert doc["latency"]["systems"]["mailflow lab"]["client_ms"]["p50"] > 0
    assert {d["mode"] for d in doc["drain"]} == {"local", "hop"}
    for drain in doc["drain"]:
        assert drain["messages"] == 200 and drain["rate"] > 0, drain
        assert drain["queues_left"] == [], drain
    assert doc["deep"]["release"]["rate"] > 0
    assert all(r["cpu_ms_per_msg"]["median"] > 0 for r in (rates["aiosmtpd bare"]["20"],
                                                           rates["mailflow lab"]["20"]))
    for stage in ("loaded", "restarted"):
        reads = doc["deep"][stage]
        assert reads["deferred"] == 200
        assert reads["metrics_s"]["median"] > 0 and reads["cli_queues_s"]["median"] > 0
        assert reads["vm_mb"]["VmHWM"] > 0
    assert all(s > 0 for s in doc["startup"]["all_s"])
    lab_targets = [t for t in doc["targets"] if not t["target"].startswith("1b")]
    assert lab_targets and all(t["value"] is not None and t["value"] > 0 for t in lab_targets)


def test_generated_organization_is_what_its_toml_loads_to() -> None:
    scenario = orgs.organization(servers=7, mailboxes=120, sites=3, items=2)
    assert scenarios.parse(scenario.source, "generated") == scenario
    assert len({server.site for server in scenario.servers}) == 3
    assert len(scenario.connectors) == 3  # every two sites
    assert {box.server for box in scenario.mailboxes} == {s.name for s in scenario.servers}


def test_migration_bench_quick_moves_every_mailbox_with_a_clean_audit(tmp_path: Path) -> None:
    out = tmp_path / "migration.json"
    harness = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "migration.py"), "--quick", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        stdout, stderr = harness.communicate(timeout=180)  # a hung harness, not a slow one
    except subprocess.TimeoutExpired:
        harness.terminate()  # SIGTERM: the harness stops the lab it started
        stdout, stderr = harness.communicate(timeout=60)
        pytest.fail(f"bench/migration.py did not finish:\n{stderr[-4000:]}")
    assert harness.returncode == 0, stderr[-4000:]
    assert "simulated hours per real minute" in stdout
    doc = json.loads(out.read_text())
    run = doc["run"]
    assert not run["cut_short"]
    assert run["moves"]["completed"] == run["moves"]["asked"] == doc["settings"]["moves"]
    assert run["moves"]["failed"] == 0
    audit = run["audit"]
    assert audit["clean"], audit["problems"]
    assert run["mail"]["sent"] > 0 and run["mail"]["refused"] == 0
    assert audit["delivered"] == run["mail"]["sent"]  # every message, to its mailbox
    assert sum(audit["queued"].values()) == 0 and run["in_transit_at_end"] == []
    flow = run["flow"]
    # Mail for mailboxes in transit was parked in deferred, released and rerouted over SMTP.
    assert flow["mailflow_messages_deferred_total"] > 0
    assert flow["mailflow_messages_released_total"] > 0
    assert doc["startup"]["seconds"] > 0 and doc["startup"]["endpoints"] == 6
    assert run["rss_mb"]["VmHWM"] > 0 and run["sim_hours"] > 0


@pytest.mark.tools
def test_scaleout_smoke_delivers_every_message(tmp_path: Path,
                                               postgres: PostgresServer) -> None:
    out = tmp_path / "scaleout.json"
    harness = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "scaleout.py"), "--processes", "1",
         "--messages", "48", "--sessions", "16", "--store-url", postgres.url(),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    _, stderr = finished(harness, "bench/scaleout.py")
    assert harness.returncode == 0, stderr[-4000:]
    [run] = json.loads(out.read_text())["runs"]
    assert run["processes"] == 1 and run["messages"] == 48
    assert run["delivered"] == 48, run
    assert run["queues_left"] == [], run
    assert 0 < run["relayed"] < 48  # some mail stayed on its server, some hopped
    assert run["accepted_rate"] > 0 and run["e2e_rate"] > 0
