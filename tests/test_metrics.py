"""/metrics after real mail flow: every metric of DESIGN.md with exactly its labels, the age
histogram of queued mail, OpenMetrics on request, and a clean `promtool check metrics`."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import aiosmtplib
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from mailflow import __version__
from mailflow.runtime.lab import Lab
from stores.backend import Fact
from tests.conftest import require_tool
from tests.helpers import api, hold_move, queue_depth, sample, scrape, send

ALICE, CAROL, DAVE = "alice@contoso.test", "carol@contoso.test", "dave@contoso.test"

# DESIGN.md "Metrics", plus what the observability issue adds: family name -> label names.
DESIGN_METRICS = {
    "mailflow_queue_messages": {"server", "queue"},
    "mailflow_queue_oldest_message_age_seconds": {"server", "queue"},
    "mailflow_queue_message_age_seconds": {"server", "queue"},
    "mailflow_mailboxes_in_transit": {"server"},
    "mailflow_moves": {"status"},
    "mailflow_smtp_messages_accepted": {"server"},
    "mailflow_smtp_rejections": {"server", "code"},
    "mailflow_store_delivery_failures": {"server", "error"},
    "mailflow_messages_deferred": {"server", "queue"},
    "mailflow_messages_released": {"server", "queue"},
    "mailflow_messages_delivered": {"server"},
    "mailflow_messages_rerouted": {"server", "transport"},
    "mailflow_ndrs": {"server", "status"},
    "mailflow_mta_connection_failures": {"server", "target", "event_id"},
    "mailflow_deferral_seconds": {"server"},
    "mailflow_delivery_latency_seconds": {"server"},
    "mailflow_move_duration_seconds": {"engine"},
    "mailflow_build_info": {"version"},
}
# The suffix of each sample of a family, by type; _created is prometheus_client's own.
SUFFIXES = {"counter": {"_total"}, "histogram": {"_bucket", "_sum", "_count"},
            "gauge": {""}}
PROCESS_METRICS = ("process_cpu_seconds", "process_resident_memory_bytes", "python_info")


async def _every_kind_of_flow(lab: Lab) -> None:
    """Delivery, SMTP relay, a refusal, a held 2003 move and seed 003's stuck RPC queue."""
    await send(lab, "EX2003-A", ALICE, subject="before")
    await send(lab, "EX2003-A", CAROL, subject="relayed")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(lab, "EX2003-A", "victim@example.org")
    alice_move = await hold_move(lab, ALICE, "EX2003-B")
    dave_move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX2003-A", ALICE, subject="parked")
    await send(lab, "EX55-LON", DAVE, subject="held")
    await lab.advance(600)
    for move in (alice_move, dave_move):
        status, _ = await api(lab, "POST", f"/api/v1/moves/{move}/complete")
        assert status == 200
    await lab.settle()
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 1
    # Until the NDR issue emits them, an "ndr" fact as it will: one per report.
    lab.metrics.observe([Fact("ndr", {"server": "EX2003-A", "status": "4.4.7"})])


async def test_every_design_metric_appears_with_its_labels(lab: Lab) -> None:
    await _every_kind_of_flow(lab)
    families = {f.name: f for f in text_string_to_metric_families(await scrape(lab))}
    for name, labels in DESIGN_METRICS.items():
        family = families.get(name)
        assert family is not None and family.samples, f"{name} is missing"
        suffixes = {s.name.removeprefix(name) for s in family.samples} - {"_created"}
        assert suffixes == SUFFIXES[family.type], (name, family.type, suffixes)
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (s.name, s.labels)
    for name in PROCESS_METRICS:
        assert families[name].samples, name
    text = await scrape(lab)
    assert sample(text, "mailflow_build_info", version=__version__) == 1
    assert sample(text, "mailflow_ndrs_total", server="EX2003-A", status="4.4.7") == 1
    assert sample(text, "mailflow_mta_connection_failures_total", server="EX55-LON",
                  target="EX2003-A", event_id="9322") == 1
    assert sample(text, "mailflow_messages_rerouted_total", server="EX2003-A",
                  transport="smtp") == 2  # carol's, then alice's released mail
    assert sample(text, "mailflow_deferral_seconds_count", server="EX2003-B") == 1
    assert sample(text, "mailflow_queue_messages", server="EX55-LON", queue="mta:EX2003-A") == 1


async def test_flow_counters_start_at_zero(lab: Lab) -> None:
    text = await scrape(lab)
    for server, parking in (("EX2003-A", "deferred"), ("EX55-LON", "holding")):
        assert sample(text, "mailflow_smtp_messages_accepted_total", server=server) == 0
        assert sample(text, "mailflow_messages_delivered_total", server=server) == 0
        for counter in ("deferred", "released"):
            assert sample(text, f"mailflow_messages_{counter}_total", server=server,
                          queue=parking) == 0


async def test_queue_age_histogram_is_qshape_of_the_store(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    for n in range(3):
        await send(lab, "EX2003-A", ALICE, subject=f"old {n}")
    await lab.settle()
    await lab.advance(7 * 60)
    await send(lab, "EX2003-A", ALICE, subject="new")
    await lab.settle()
    text = await scrape(lab)

    def bucket(le: str, queue: str = "deferred") -> float | None:
        return sample(text, "mailflow_queue_message_age_seconds_bucket", server="EX2003-A",
                      queue=queue, le=le)

    # Three recipients 7 minutes old, one just queued: the 5- and 10-minute columns.
    assert [bucket(le) for le in ("300.0", "600.0", "76800.0", "+Inf")] == [1, 4, 4, 4]
    assert sample(text, "mailflow_queue_message_age_seconds_sum", server="EX2003-A",
                  queue="deferred") == 3 * 7 * 60
    assert sample(text, "mailflow_queue_message_age_seconds_count", server="EX2003-A",
                  queue="deferred") == 4
    assert sample(text, "mailflow_queue_oldest_message_age_seconds", server="EX2003-A",
                  queue="deferred") == 7 * 60
    # Empty standard queues are there too, with empty buckets.
    assert bucket("+Inf", "local") == 0


async def test_openmetrics_on_request(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    await send(lab, "EX2003-A", ALICE)
    await lab.settle()
    # The Accept header Prometheus sends.
    accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    async with aiohttp.ClientSession() as session, session.get(
        f"{lab.http_url}/metrics", headers={"Accept": accept}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        body = await response.text()
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics(body)}  # type: ignore[no-untyped-call]
    depth = families["mailflow_queue_messages"]
    assert any(s.labels == {"server": "EX2003-A", "queue": "deferred"} and s.value == 1
               for s in depth.samples)
    assert families["mailflow_build"].type == "info"
    assert families["mailflow_queue_message_age_seconds"].type == "histogram"
    # Without the header: the classic text format, for curl and promtool.
    async with aiohttp.ClientSession() as session, session.get(
        f"{lab.http_url}/metrics"
    ) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_promtool_check_metrics_is_clean(lab: Lab) -> None:
    promtool = require_tool("promtool")
    await _every_kind_of_flow(lab)
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate((await scrape(lab)).encode())
    # Lint findings are printed even when the exit code is 0.
    assert (proc.returncode, out.decode()) == (0, "")
