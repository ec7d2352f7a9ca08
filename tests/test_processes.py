"""The default scenario in three processes on one PostgreSQL (issue 22).

LONDON (EX55-LON, EX2000-LON) starts first and leads; EX2003-A and EX2003-B each run in a
process of their own. Each test drives the organization through different processes, as a
user may: mail sent to one, moves started from another, the clock advanced from a third,
and every process answering for the whole organization. Kills are kill -9; the clock is
stopped and advanced by the tests.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_tool
from tests.pg import PostgresServer
from tests.process import LabProcess, call, ephemeral_scenario

# The processes, in the order they start: the first leads.
LAYOUT = {"london": "EX55-LON,EX2000-LON", "a": "EX2003-A", "b": "EX2003-B"}


class Org:
    def __init__(self, processes: dict[str, LabProcess]) -> None:
        self.p = processes

    async def call(self, name: str, method: str, path: str, body: Any = None) -> Any:
        return await call(self.p[name], method, path, body)

    async def send(self, name: str, server: str, rcpt: str, count: int, tag: str) -> list[str]:
        """``count`` messages to ``rcpt`` through ``server``'s endpoint in process ``name``;
        returns the queue ids of the 250s."""
        acked = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.p[name].port(server),
                                   start_tls=False, local_hostname="processes.test") as smtp:
            for n in range(count):
                body = (f"From: <t@example.net>\r\nTo: <{rcpt}>\r\nSubject: {tag} {n}\r\n"
                        f"Message-ID: <{tag}.{n}@example.net>\r\n\r\nbody {n}\r\n")
                _, reply = await smtp.sendmail("t@example.net", [rcpt], body.encode())
                acked.append(reply.split("<", 1)[1].split(">", 1)[0])
        return acked

    async def mailbox_ids(self, name: str, address: str) -> list[str]:
        items = await self.call(name, "GET",
                                f"/api/v1/mailboxes/{address}/messages?limit=100000")
        return [item["message_id"] for item in items]

    async def until_delivered(self, name: str, address: str, count: int) -> list[str]:
        """The Message-IDs in ``address`` once it holds ``count`` (released mail still
        crosses the hop between processes: a bounded wait for that, not for a schedule)."""
        for _ in range(3000):
            ids = await self.mailbox_ids(name, address)
            if len(ids) >= count:
                return ids
            await asyncio.sleep(0.01)
        raise AssertionError(f"{address} holds {len(ids)} of {count}")

    async def audit_everywhere(self) -> None:
        for name, lab in self.p.items():
            if lab.proc is not None and lab.proc.poll() is None:
                report = await self.call(name, "GET", "/api/v1/audit")
                assert report["clean"], (name, report["problems"])


@pytest.fixture
def org(tmp_path: Path, postgres: PostgresServer) -> Iterator[Org]:
    url = postgres.new_database()
    scenario = ephemeral_scenario(tmp_path)
    processes = {name: LabProcess(tmp_path / name, scenario=scenario, store=url,
                                  servers=servers)
                 for name, servers in LAYOUT.items()}
    for lab in processes.values():
        lab.start()
    yield Org(processes)
    for lab in processes.values():
        if lab.proc is not None and lab.proc.poll() is None:
            code, _, err = lab.stop()
            assert code == 0, err


async def test_the_readme_walkthrough_across_processes(org: Org) -> None:
    # Every process sees every server's endpoint, wherever it runs.
    status = await org.call("b", "GET", "/api/v1/status")
    assert set(status["endpoints"]) == {"EX2003-A", "EX2003-B", "EX55-LON", "EX2000-LON"}

    await org.send("a", "EX2003-A", "alice@contoso.test", 1, "first")
    await org.send("a", "EX2003-A", "carol@contoso.test", 1, "hop")  # to process b
    await org.until_delivered("b", "carol@contoso.test", 1)
    move = await org.call("london", "POST", "/api/v1/moves",
                          {"mailbox": "alice@contoso.test", "target": "EX2003-B",
                           "hold": True})
    await org.call("b", "POST", "/api/v1/clock/advance", {"seconds": 60})  # copy: Held
    await org.send("a", "EX2003-A", "alice@contoso.test", 3, "deferred")
    queues = await org.call("b", "GET", "/api/v1/queues")
    deferred = next(q for q in queues
                    if q["server"] == "EX2003-A" and q["queue"] == "deferred")
    assert deferred["message_count"] == 3

    # The deferred mail is retried by EX2003-A's process as the shared clock passes.
    await org.call("london", "POST", "/api/v1/clock/advance", {"seconds": 45 * 60})
    events = await org.call("b", "GET", "/api/v1/events?limit=1000")
    assert sum(e["event_id"] == 9660 for e in events) >= 6  # 3 refused at 250, 3 at a retry

    done = await org.call("b", "POST", f"/api/v1/moves/{move['id']}/complete")
    assert done["status"] == "Completed"
    ids = await org.until_delivered("a", "alice@contoso.test", 4)
    assert sorted(ids) == sorted(["<first.0@example.net>", *(
        f"<deferred.{n}@example.net>" for n in range(3))])
    mailbox = await org.call("a", "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert mailbox["server"] == "EX2003-B"
    await org.audit_everywhere()


async def test_kill_9_of_ex2003_a_mid_drain_loses_and_duplicates_nothing(org: Org) -> None:
    move = await org.call("b", "POST", "/api/v1/moves",
                          {"mailbox": "alice@contoso.test", "target": "EX2003-B",
                           "hold": True})
    await org.call("b", "POST", "/api/v1/clock/advance", {"seconds": 60})
    acked = await org.send("a", "EX2003-A", "alice@contoso.test", 300, "drain")
    await org.call("b", "POST", f"/api/v1/moves/{move['id']}/complete")
    # Under load: clients keep sending to EX2003-A (for carol, on EX2003-B) through the
    # kill and the restart, each message on a connection of its own.
    load: list[str] = []
    enough = asyncio.Event()
    loading = asyncio.create_task(_keep_sending(org, load, enough))
    # Released by the leader; EX2003-A's process relays it over the hop to EX2003-B's.
    for _ in range(5000):
        if await org.mailbox_ids("b", "alice@contoso.test"):
            break
        await asyncio.sleep(0.001)
    await asyncio.to_thread(org.p["a"].kill9)
    await asyncio.to_thread(org.p["a"].start)
    enough.set()
    await loading
    # What the kill cut short is retried on the link queue's schedule.
    for _ in range(10):
        queues = await org.call("a", "GET", "/api/v1/queues")
        if not sum(q["message_count"] for q in queues):
            break
        await org.call("a", "POST", "/api/v1/clock/advance", {"seconds": 600})
    ids = await org.until_delivered("b", "alice@contoso.test", len(acked))
    assert len(ids) == len(set(ids)) == len(acked) == 300
    # A message whose 250 the kill cut off may be delivered too; none twice.
    carol = await org.until_delivered("b", "carol@contoso.test", len(load))
    assert len(carol) == len(set(carol)) >= len(load)
    for queue_id in [*acked[::50], *load]:
        message = await org.call("london", "GET", f"/api/v1/messages/{queue_id}")
        assert [r["state"] for r in message["recipients"]] == ["delivered"]
    await org.audit_everywhere()


async def _keep_sending(org: Org, acked: list[str], enough: asyncio.Event) -> None:
    """Send to carol through EX2003-A until ``enough`` is set and 20 were acknowledged after
    it; a send the kill broke is sent again (as a new message: only a 250 counts)."""
    after = None
    for n in itertools.count():
        if enough.is_set():
            after = len(acked) if after is None else after
            if len(acked) >= after + 20:
                return
        try:
            acked += await org.send("a", "EX2003-A", "carol@contoso.test", 1, f"load{n}")
        except (aiosmtplib.SMTPException, OSError, KeyError):
            await asyncio.sleep(0.02)  # EX2003-A's process is down, or starting


async def test_the_leaders_death_hands_the_organization_to_another(org: Org) -> None:
    assert await _leader(org) == "london"
    await asyncio.to_thread(org.p["london"].kill9)
    # Another process leads within a tick of the death (the wait is bounded, in real time).
    assert await _leader(org) in ("a", "b")
    # A move needs the leader: started and advanced from two other processes, it completes.
    move = await org.call("a", "POST", "/api/v1/moves",
                          {"mailbox": "bob@contoso.test", "target": "EX2003-B"})
    for _ in range(3):
        await org.call("b", "POST", "/api/v1/clock/advance", {"seconds": 600})
    shown = await org.call("a", "GET", f"/api/v1/moves/{move['id']}")
    assert shown["status"] == "Completed", shown
    # LONDON's servers are down with their process: mail for them waits on EX2003-A's link.
    await org.send("a", "EX2003-A", "dave@contoso.test", 2, "london-down")
    await asyncio.to_thread(org.p["london"].start)
    await org.call("b", "POST", "/api/v1/clock/advance", {"seconds": 600})
    await org.until_delivered("b", "dave@contoso.test", 2)
    await org.audit_everywhere()


async def test_each_series_is_scraped_from_one_process(org: Org) -> None:
    promtool = require_tool("promtool")
    await org.send("a", "EX2003-A", "carol@contoso.test", 2, "metrics")
    await org.until_delivered("b", "carol@contoso.test", 2)
    leader = await _leader(org)
    owners: dict[tuple[str, str], list[str]] = {}
    moves_from = []
    for name, lab in org.p.items():
        async with aiohttp.ClientSession() as session, session.get(
                f"{lab.api}/metrics") as response:
            text = await response.text()
        proc = await asyncio.create_subprocess_exec(
            promtool, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await proc.communicate(text.encode())
        assert (proc.returncode, out.decode()) == (0, ""), name
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for sample in families["mailflow_queue_messages"].samples:
            key = (sample.labels["server"], sample.labels["queue"])
            owners.setdefault(key, []).append(name)
        if "mailflow_moves" in families:
            moves_from.append(name)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert {server for server, _ in owners} == {"EX2003-A", "EX2003-B", "EX55-LON",
                                                 "EX2000-LON"}
    assert owners[("EX2003-A", "local")] == ["a"]
    assert moves_from == [leader]
    # The flow counters count what each process did: EX2003-A's 250s in its process.
    async with aiohttp.ClientSession() as session, session.get(
            f"{org.p['a'].api}/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    accepted = {s.labels["server"]: s.value
                for s in families["mailflow_smtp_messages_accepted"].samples
                if s.name.endswith("_total")}
    assert accepted["EX2003-A"] == 2


async def _leader(org: Org) -> str:
    """The live process that leads, from any live one's view of the organization."""
    alive = {n: lab for n, lab in org.p.items() if lab.proc and lab.proc.poll() is None}
    for _ in range(1000):
        processes = await org.call(next(iter(alive)), "GET", "/api/v1/processes")
        leaders = [n for p in processes if p["leader"]
                   for n, lab in alive.items() if lab.api == p["api"]]
        if leaders:
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no process leads")
