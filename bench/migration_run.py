"""The run of the migration benchmark (issue 22): a lab under a migration, step by step.

In: the settings (``Settings``), a started lab process (``LabProcess``: its pid, API URL and
token, and each server's SMTP port). Out: a ``dict`` of what happened and what it cost:
steps of simulated time (``step`` seconds each) until every move has ended, in each step
(1) batches of ``batch`` moves begun over the API (``POST /api/v1/moves`` with a batch name,
so each batch shares the wizard's 4 threads, KB 821829) while fewer than ``parallel``
batches run, each mailbox moved to a server of another site; (2) the background mail due in
the step sent over real SMTP to each recipient's current home server
(``bench.migration_mail``); (3) the clock advanced by ``step`` (``POST
/api/v1/clock/advance``: the lab runs every piece of work due on the way and settles);
(4) the running moves read back (``GET /api/v1/moves/{id}``), a completed move changing
its mailbox's home. Then the queues left, the audit (``GET /api/v1/audit``), the lab's
peak RSS and CPU seconds.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.migration_mail import Background, Sent, send
from bench.orgs import digits_for, mailbox_address, server_names
from bench.probes import cpu_seconds, vm_status
from bench.procs import log

# Final statuses of a move (mailflow.moves.states.FINAL, as the API spells them).
DONE = ("Completed", "CompletedWithWarning")
FINAL = (*DONE, "Failed")


@dataclass(frozen=True)
class Settings:
    servers: int
    mailboxes: int
    sites: int
    moves: int
    batch: int
    parallel: int
    rate: float
    sample: float
    step: float
    sessions: int
    items: int
    seed: int


@dataclass(frozen=True)
class LabProcess:
    pid: int
    api: str
    token: str
    ports: dict[str, int]


class Api:
    """The lab's HTTP API, with its token; errors raise."""

    def __init__(self, session: aiohttp.ClientSession, lab: LabProcess) -> None:
        self.session = session
        self.url = lab.api
        self.headers = {"Authorization": f"Bearer {lab.token}"}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body,
                                        headers=self.headers) as r:
            doc = await r.json()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {doc}")
            return doc


class Migration:
    """The plan (who moves where, in which batch) and the state (homes, running batches)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        rng = random.Random(s.seed)
        names = server_names(s.servers, s.sites)
        self.server = [name for name, _ in names]
        site_of = [site for _, site in names]
        self.home = [n % s.servers for n in range(s.mailboxes)]
        self.digits = digits_for(s.mailboxes)
        movers = rng.sample(range(s.mailboxes), s.moves)
        plan: list[tuple[int, int]] = []
        for n in movers:
            others = [i for i in range(s.servers) if site_of[i] != site_of[self.home[n]]]
            plan.append((n, rng.choice(others or [i for i in range(s.servers)
                                                  if i != self.home[n]])))
        self.batches = [plan[i:i + s.batch] for i in range(0, len(plan), s.batch)]
        self.running: dict[str, dict[str, tuple[int, int]]] = {}  # batch -> move id -> plan
        self.started = self.completed = self.failed = 0
        self.failures: list[str] = []
        self.background = Background(rng, s.mailboxes, s.rate, s.sample)

    def address(self, n: int) -> str:
        return mailbox_address(n, self.digits)

    def moving(self) -> set[int]:
        return {n for moves in self.running.values() for n, _ in moves.values()}

    async def begin_batches(self, api: Api) -> int:
        """Begin batches while fewer than ``parallel`` run; returns the moves begun."""
        begun = 0
        while self.batches and len(self.running) < self.s.parallel:
            name = f"B{self.started // self.s.batch + 1:05d}"
            moves: dict[str, tuple[int, int]] = {}
            for n, target in self.batches.pop(0):
                doc = await api.call("POST", "/api/v1/moves", {
                    "mailbox": self.address(n), "target": self.server[target], "batch": name})
                moves[str(doc["id"])] = (n, target)
            self.running[name] = moves
            self.started += len(moves)
            begun += len(moves)
        return begun

    async def poll(self, api: Api) -> None:
        """Read back every running move; an ended move leaves its batch, a completed one
        changes its mailbox's home."""
        for name, moves in list(self.running.items()):
            for move_id, (n, target) in list(moves.items()):
                doc = await api.call("GET", f"/api/v1/moves/{move_id}")
                if doc["status"] not in FINAL:
                    continue
                del moves[move_id]
                if doc["status"] in DONE:
                    self.completed += 1
                    self.home[n] = target
                else:
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(f"{move_id}: {doc.get('status_detail')}")
            if not moves:
                del self.running[name]

    def mail_due(self) -> dict[int, list[str]]:
        """The background mail of the next step, by the SMTP port of each home server."""
        by_server: dict[int, list[str]] = {}
        for n in self.background.due(self.s.step, self.moving()):
            by_server.setdefault(self.home[n], []).append(self.address(n))
        return by_server


# Counters of /metrics summed over their labels: what the mail went through.
FLOW = ("mailflow_smtp_messages_accepted_total", "mailflow_store_delivery_failures_total",
        "mailflow_messages_deferred_total", "mailflow_messages_released_total",
        "mailflow_messages_delivered_total", "mailflow_messages_rerouted_total",
        "mailflow_ndrs_total")


async def flow_counters(session: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """The ``FLOW`` counters of the lab's /metrics, each summed over its labels."""
    async with session.get(api + "/metrics") as r:
        text = await r.text()
    out = dict.fromkeys(FLOW, 0.0)
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in out:
            out[name] += float(rest.rsplit(" ", 1)[1])
    return out


async def run(s: Settings, lab: LabProcess, budget: float) -> dict[str, Any]:
    """Run the migration to its end (or until ``budget`` real seconds have passed: the
    result then says it was cut short); returns the measures."""
    mig = Migration(s)
    sent = Sent()
    phases = {"moves_s": 0.0, "mail_s": 0.0, "advance_s": 0.0, "poll_s": 0.0}
    rss_max = 0.0
    steps = 0
    cpu0 = cpu_seconds(lab.pid) or 0.0
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = Api(session, lab)
        clock0 = float((await api.call("GET", "/api/v1/clock"))["now"])
        t0 = time.perf_counter()
        cut_short = False
        while mig.batches or mig.running:
            if time.perf_counter() - t0 > budget:
                cut_short = True
                break
            t = time.perf_counter()
            await mig.begin_batches(api)
            t1 = time.perf_counter()
            by_server = mig.mail_due()
            ports = {lab.ports[mig.server[i]]: rcpts for i, rcpts in by_server.items()}
            step_sent = await send(ports, s.sessions, first=sent.sent + sent.refused)
            sent.add(step_sent)
            t2 = time.perf_counter()
            await api.call("POST", "/api/v1/clock/advance", {"seconds": s.step})
            t3 = time.perf_counter()
            await mig.poll(api)
            t4 = time.perf_counter()
            for key, dt in zip(phases, (t1 - t, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key] += dt
            steps += 1
            rss_max = max(rss_max, vm_status(lab.pid).get("VmRSS", 0.0))
            if steps % 10 == 0:
                log(f"step {steps}: {steps * s.step / 3600:.1f} sim h, moves"
                    f" {mig.completed}/{s.moves} done, {sent.sent} messages sent,"
                    f" {time.perf_counter() - t0:.0f} s, RSS {rss_max:.0f} MB")
        real = time.perf_counter() - t0
        clock1 = float((await api.call("GET", "/api/v1/clock"))["now"])
        cpu = (cpu_seconds(lab.pid) or 0.0) - cpu0
        status = await api.call("GET", "/api/v1/status")
        counters = await flow_counters(session, lab.api)
        t = time.perf_counter()
        audit = await api.call("GET", "/api/v1/audit")
        audit_s = time.perf_counter() - t
    vm = vm_status(lab.pid)
    sim_hours = (clock1 - clock0) / 3600.0
    return {
        "cut_short": cut_short, "steps": steps, "sim_hours": sim_hours, "real_s": real,
        "sim_hours_per_real_minute": sim_hours / (real / 60.0) if real else None,
        "phases_s": phases, "lab_cpu_s": cpu,
        "moves": {"asked": s.moves, "started": mig.started, "completed": mig.completed,
                  "failed": mig.failed, "failures": mig.failures},
        "mail": {"arrivals_at_full_rate": round(mig.background.arrived),
                 "sent": sent.sent, "refused": sent.refused, "errors": sent.errors,
                 "send_s": sent.seconds},
        "flow": counters, "queued_at_end": status.get("queued"),
        "queues_at_end": status.get("queues"),
        "in_transit_at_end": status.get("in_transit"),
        "audit": audit, "audit_s": audit_s,
        "rss_mb": {"VmRSS_max_sampled": rss_max, "VmHWM": vm.get("VmHWM"),
                   "VmRSS_end": vm.get("VmRSS")},
    }
