"""Running a lab: a ``LabPlan`` in, a fresh lab driven step by step, a verdict out.

The runner starts its own lab (manual clock unless ``speed`` is given), then
acts on it as a user would: mail goes over real SMTP, everything else through
the HTTP API, metrics are read from the real ``/metrics``. It prints a line a
step, records one result per expectation, and can write them as JUnit XML.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from prometheus_client.parser import text_string_to_metric_families

from mailflow.cli.client import parse_duration
from mailflow.labs import LabPlan, LabStep
from mailflow.refusals import refusal_line
from mailflow.runtime.lab import Lab


@dataclass
class Result:
    step: LabStep
    title: str
    passed: bool
    seen: str


@dataclass
class Run:
    plan: LabPlan
    results: list[Result] = field(default_factory=list)
    real_seconds: float = 0.0
    simulated_seconds: float = 0.0
    # Set when an action was refused ("step N: KIND: what"): the run stopped there, and
    # the exit status it calls for (2, or 1 for a mail server's SMTP refusal).
    error: str = ""
    error_status: int = 0

    @property
    def passed(self) -> bool:
        return not self.error and all(r.passed for r in self.results)


class StepError(RuntimeError):
    """An action the lab refused; the run stops."""


class Runner:
    def __init__(self, plan: LabPlan, lab: Lab, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.lab = lab
        self.say = say
        self.moves: dict[str, str] = {}
        self.sent: dict[str, list[str]] = {}
        self.session: aiohttp.ClientSession | None = None

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {self.lab.token}"}
        async with self.session.request(method, f"{self.lab.http_url}{path}", json=body,
                                        headers=headers) as response:
            payload = (await response.json() if response.content_type == "application/json"
                       else await response.text())
            if response.status >= 400:
                detail = payload.get("error") if isinstance(payload, dict) else payload
                raise StepError(f"{method} {path}: {response.status} {detail}")
            return payload

    async def run(self) -> Run:
        """Every step in order, a line each; a refused action stops the run (``Run.error``)."""
        run = Run(self.plan)
        started, sim_start = time.monotonic(), self.lab.clock.now()
        async with aiohttp.ClientSession() as self.session:
            for step in self.plan.steps:
                try:
                    line = await self.line(step, run)
                except StepError as exc:
                    run.error, run.error_status = f"step {step.number}: {step.kind}: {exc}", 2
                    break
                except aiosmtplib.SMTPException as exc:
                    run.error = f"step {step.number}: {step.kind}: {refusal_line(exc)}"
                    run.error_status = 1
                    break
                self.say(f"  [{step.number:>2}] {line}")
        run.real_seconds = time.monotonic() - started
        run.simulated_seconds = self.lab.clock.now() - sim_start
        return run

    async def line(self, step: LabStep, run: Run) -> str:
        """Run one step; what it did, or what it checked and saw."""
        if step.kind not in ("expect", "wait_until"):
            return await self.act(step)
        result = await self.expect(step)
        run.results.append(result)
        return f"{result.title} ... {'ok' if result.passed else 'FAILED'} ({result.seen})"

    # -- actions ------------------------------------------------------------------------------

    async def act(self, step: LabStep) -> str:
        a = step.args
        if step.kind == "advance":
            await self.lab.advance(a["seconds"])
            return f"advance {a['seconds']:g} s of simulated time"
        if step.kind == "send":
            return await self.send(a)
        if step.kind == "move":
            return await self.move(a)
        if step.kind == "connector":
            if a["action"] == "add":
                body = {"type": a.get("type", "site"), "site_a": a["sites"][0],
                        "site_b": a["sites"][1], "cost": a.get("cost", 1),
                        "name": a.get("name", "")}
                doc = await self.api("POST", "/api/v1/connectors", body)
                return f"connector add {doc['name']!r} ({doc['type']})"
            for connector in await self.api("GET", "/api/v1/connectors"):
                if connector["name"] == a["name"]:
                    await self.api("DELETE", f"/api/v1/connectors/{connector['id']}")
                    return f"connector remove {a['name']!r}"
            raise StepError(f"no connector named {a['name']!r}")
        if step.kind == "rpc":
            first, second = a["servers"]
            await self.api("POST", "/api/v1/rpc", {"a": first, "b": second,
                                                   "allowed": a["action"] == "allow"})
            return f"rpc {a['action']} {first} {second}"
        if step.kind == "fault":
            if a.get("clear"):
                doc = await self.api("DELETE", "/api/v1/faults")
                return f"fault clear ({doc['removed']} removed)"
            doc = await self.api("POST", "/api/v1/faults", a["rule"])
            return f"fault {doc['id']}: {doc['action']} at {doc['stage']} on {doc['server']}"
        if step.kind == "service":
            service = a.get("service", "mta")
            await self.api("POST", f"/api/v1/services/{a['server']}/{service}/{a['action']}")
            return f"service {a['action']} {a['server']} {service}"
        if step.kind == "db":
            return await self.database(a)
        if step.kind in ("adc", "directory"):
            return await self.directory(step.kind, a)
        await self.api("POST", f"/api/v1/queues/{a['server']}/{a['queue']}/{a['action']}")
        await self.lab.settle()
        return f"queue {a['action']} {a['server']}\\{a['queue']}"

    async def database(self, a: dict[str, Any]) -> str:
        """A ``db`` step (issue 19), as ``mailflow db`` would send it."""
        verb, base = a["action"], f"/api/v1/databases/{a['database']}"
        if verb in ("dismount", "mount"):
            await self.api("POST", f"{base}/{verb}")
        elif verb == "failover":
            await self.api("POST", f"{base}/failover", {"server": a["server"]})
        elif verb == "lag":
            await self.api("POST", f"{base}/copies/{a['server']}/lag",
                           {"copy_queue_length": a["copy_queue"]})
        else:
            await self.api("POST", f"{base}/copies/{a['server']}/{verb.removesuffix('-copy')}")
        return f"db {verb} {a['database']} {a.get('server', '')}".rstrip()
    async def directory(self, kind: str, a: dict[str, Any]) -> str:
        """The ADC run, stopped or started, or an edit of one 5.5 directory (issue 17)."""
        if kind == "directory":
            await self.api("POST", f"/api/v1/directory/{a['address']}/edit",
                           {"replica": a["replica"], "set": a["set"]})
            return f"directory edit {a['address']} in {a['replica']}"
        body = {"agreement": a.get("agreement")} if a["action"] == "run" else None
        await self.api("POST", f"/api/v1/adc/{a['action']}", body)
        return f"adc {a['action']} {a.get('agreement', '')}".rstrip()

    async def send(self, a: dict[str, Any]) -> str:
        rcpts = [a["to"]] if isinstance(a["to"], str) else list(a["to"])
        via = a.get("via") or self.lab.scenario.servers[0].name
        sender = a.get("from", "tester@example.net")
        host, port = self.lab.endpoint_address(self.lab.scenario.server(via).name)
        padding = "x" * 76 + "\r\n"
        ids = []
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                                   local_hostname="mailflow-lab") as smtp:
            for n in range(int(a.get("count", 1))):
                body = (f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\n"
                        f"Subject: {a.get('subject', 'lab message')} {n + 1}\r\n\r\n"
                        + padding * (int(a.get("size", 0)) // len(padding)) + "hello\r\n")
                _, reply = await smtp.sendmail(sender, rcpts, body.encode())
                ids.append(reply.split("<", 1)[1].split(">", 1)[0])
        self.sent.setdefault(str(a.get("name", "")), []).extend(ids)
        await self.lab.settle()
        return f"send {len(ids)} to {', '.join(rcpts)} via {via}: 250 {' '.join(ids)}"

    async def move(self, a: dict[str, Any]) -> str:
        name, action = a["name"], a["action"]
        if action == "start":
            body = {k: v for k, v in a.items() if k not in ("action", "name", "to", "at")}
            body["target"] = a["to"]
            if "at" in a:
                body["at"] = self.lab.clock.now() + parse_duration(a["at"][1:])
            doc = await self.api("POST", "/api/v1/moves", body)
            self.moves[name] = doc["id"]
        elif action == "remove":
            await self.api("DELETE", f"/api/v1/moves/{self.moves[name]}")
            return f"move remove {name}"
        else:
            doc = await self.api("POST", f"/api/v1/moves/{self.moves[name]}/{action}")
        await self.lab.settle()
        doc = await self.api("GET", f"/api/v1/moves/{self.moves[name]}")
        return (f"move {action} {name} ({doc['mailbox']} {doc['source']} -> {doc['target']},"
                f" {doc['engine']}): {doc['status']} / {doc['status_detail']}")

    # -- expectations -------------------------------------------------------------------------

    async def expect(self, step: LabStep) -> Result:
        title, check = self.describe(step.args)
        if step.kind == "expect":
            passed, seen = await check()
            return Result(step, f"expect {title}", passed, seen)
        deadline = self.lab.clock.now() + step.args["within"]
        while True:
            passed, seen = await check()
            if passed or self.lab.clock.now() >= deadline:
                break
            if self.lab.clock.manual:
                await self.lab.advance(min(step.args["every"], deadline - self.lab.clock.now()))
            else:
                await asyncio.sleep(step.args["every"] / self.lab.clock.speed)
        waited = f"within {step.args['within']:g} s"
        return Result(step, f"wait until {title} {waited}", passed, seen)

    def describe(self, a: dict[str, Any]) -> tuple[str, Callable[[], Any]]:
        wanted = {k: v for k, v in a.items() if k not in ("within", "every")}
        text = " ".join(f"{k}={v}" for k, v in wanted.items())
        if "queue" in a:
            return text, lambda: self.check_queue(a)
        if "mailbox" in a:
            return text, lambda: self.check_fields(
                f"/api/v1/mailboxes/{a['mailbox']}", a,
                {"count": "message_count", "server": "server", "in_transit": "in_transit"})
        if "move" in a:
            return text, lambda: self.check_fields(
                f"/api/v1/moves/{self.moves[a['move']]}", a,
                {"status": "status", "status_detail": "status_detail"})
        if "event" in a:
            return text, lambda: self.check_event(a)
        if "metric" in a:
            return text, lambda: self.check_metric(a)
        if "trace" in a:
            return text, lambda: self.check_trace(a)
        return "audit clean", self.check_audit

    async def check_queue(self, a: dict[str, Any]) -> tuple[bool, str]:
        server, _, queue = a["queue"].partition("/")
        rows = await self.api("GET", "/api/v1/queues")
        row = next((r for r in rows if r["server"].upper() == server.upper()
                    and r["queue"] == queue), {"message_count": 0, "status": "Ready"})
        checks = {"depth": row["message_count"], "status": row["status"]}
        return _compare(a, checks)

    async def check_fields(self, path: str, a: dict[str, Any], names: dict[str, str]
                           ) -> tuple[bool, str]:
        doc = await self.api("GET", path)
        return _compare(a, {key: doc[field] for key, field in names.items()})

    async def check_event(self, a: dict[str, Any]) -> tuple[bool, str]:
        events = await self.api("GET", "/api/v1/events?limit=100000")
        hits = [e for e in events if e["event_id"] == a["event"]
                and ("server" not in a or e["server"].upper() == a["server"].upper())]
        at_least = int(a.get("at_least", 1))
        return len(hits) >= at_least, f"logged {len(hits)} times"

    async def check_metric(self, a: dict[str, Any]) -> tuple[bool, str]:
        assert self.session is not None
        async with self.session.get(f"{self.lab.http_url}/metrics") as response:
            text = await response.text()
        labels = a.get("labels", {})
        value = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == a["metric"]
                    and all(s.labels.get(k) == str(v) for k, v in labels.items()))
        if "value" in a:
            return value == a["value"], f"{value:g}"
        return value >= a.get("at_least", 1), f"{value:g}"

    async def check_trace(self, a: dict[str, Any]) -> tuple[bool, str]:
        missing = []
        for message in self.sent[a["trace"]]:
            doc = await self.api("GET", f"/api/v1/messages/{message}")
            if not any(t["stage"] == a["stage"] and a.get("detail", "") in t["detail"]
                       for t in doc["trace"]):
                missing.append(message)
        found = len(self.sent[a["trace"]]) - len(missing)
        return not missing, f"{found} of {len(self.sent[a['trace']])} messages have it"

    async def check_audit(self) -> tuple[bool, str]:
        doc = await self.api("GET", "/api/v1/audit")
        summary = f"accepted {doc['accepted']}, delivered {doc['delivered']}"
        return doc["clean"], summary if doc["clean"] else "; ".join(doc["problems"][:3])


def _compare(wanted: dict[str, Any], seen: dict[str, Any]) -> tuple[bool, str]:
    checked = {k: v for k, v in seen.items() if k in wanted}
    passed = all(wanted[k] == v for k, v in checked.items())
    return passed, ", ".join(f"{k} {v}" for k, v in checked.items())


async def run_lab(plan: LabPlan, say: Callable[[str], None], *, data: Path | None = None,
                  speed: float = 0.0,
                  after: Callable[[Lab, Run], Awaitable[None]] | None = None) -> Run:
    """Start a fresh lab for ``plan`` (in a temporary directory unless ``data``), run its
    steps, hand the lab and the run to ``after`` while the lab still runs, stop the lab.
    Cancelled (SIGTERM), it still stops the lab and removes the temporary directory."""
    with tempfile.TemporaryDirectory(prefix="mailflow-lab-") as scratch:
        lab = Lab(plan.scenario, data or Path(scratch) / "data", speed=speed,
                  http=("127.0.0.1", 0), smtp_port_override=0)
        starting = asyncio.ensure_future(lab.start())
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # A lab half started cannot be stopped in order: let it finish, then stop it.
            await starting
            await lab.stop()
            raise
        try:
            say(f"lab {plan.name}: {plan.description} (scenario {plan.scenario.name},"
                f" data {lab.data_dir}, API {lab.http_url})")
            run = await Runner(plan, lab, say).run()
            if after is not None:
                await after(lab, run)
            return run
        finally:
            await lab.stop()


def junit(run: Run) -> bytes:
    suite = ET.Element("testsuite", {
        "name": run.plan.name, "tests": str(len(run.results)),
        "failures": str(sum(not r.passed for r in run.results)), "time": f"{run.real_seconds:.3f}",
    })
    for result in run.results:
        case = ET.SubElement(suite, "testcase", {"classname": f"mailflow.lab.{run.plan.name}",
                                                 "name": f"step {result.step.number}: "
                                                         f"{result.title}"})
        if not result.passed:
            ET.SubElement(case, "failure", {"message": f"saw {result.seen}"}).text = result.seen
    ET.indent(suite)
    document: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return document
