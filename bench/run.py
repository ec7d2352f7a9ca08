"""The mailflow benchmark: the lab side by side with smtp-sink, bare aiosmtpd, aiosmtpd
with one SQLite commit per message, and Postfix delivering to Maildir (issue 8).

    python bench/run.py [--quick] [--out FILE.json] [--plot FILE.png] [options]

Every system is started here, as its own process on 127.0.0.1 with a port the
system picks (or a free one picked just before), measured in the same run, and
stopped at the end (its whole process group). The load is Postfix's
``smtp-source -d`` (connections reused, 2 KB bodies) when it is installed, else
``bench/loadgen.py`` (aiosmtplib). What is measured:

* rate: messages/s accepted (time until the load generator has every 250) and end
  to end (time until the last message is in the mailbox: the lab's mailbox count,
  Postfix's Maildir), at 20 sessions (repeated, the systems taken in turn) and at
  every count of ``--sessions`` for the plot;
* latency: p50/p99 from MAIL to the 250 of DATA, with bench/loadgen.py (the lab and
  the SQLite sink store before they answer, so this is their delivery latency);
  Postfix's own delay= (arrival to Maildir) from its log;
* release drain of the lab: N messages parked in ``deferred`` behind a held move,
  then the move failed (local delivery at the source) or completed (relayed over
  the SMTP hop to EX2003-B); time from the request until the mailbox has all N;
  the lab's CPU time per message, its sender worker's included;
* deep queue: N messages parked behind a held move, loaded over SMTP; then peak
  RSS (VmHWM, of the lab and its sender worker added up), /metrics scrape time,
  GET /api/v1/queues and ``mailflow queues`` wall time, and the restart time; with
  ``--deep-clone M`` the parked rows are then copied in SQL up to M (the lab
  stopped), and the same is measured again;
* startup: from ``mailflow run`` to the first 200 from /healthz, for every lab
  started in the run.

matplotlib is optional (imported only for --plot). The JSON holds every run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from postfix_conf import master_cf  # bench/, the script's own directory

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
SENDER = "bench@example.net"
CLIENT = "client.example.net"
ALICE = "alice@contoso.test"
POSTFIX_RCPT = "alice@bench.test"
# The targets (ratios are of messages/s measured in the same run).
TARGET_E2E_VS_BARE = 0.7
TARGET_E2E_VS_POSTFIX = 1.3
TARGET_DRAIN_VS_BARE = 0.7
TARGET_RSS_MB = 300.0
TARGET_METRICS_S = 0.25
TARGET_QUEUES_S = 1.0
TARGET_STARTUP_S = 1.5
TARGET_DEEP = 500_000


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loadavg() -> float:
    return os.getloadavg()[0]


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.02) -> float:
    """Poll ``check`` until true; returns the seconds waited. Bounded by ``timeout``."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.perf_counter() - t0


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(values), "median": statistics.median(values),
                           "min": min(values), "max": max(values)}
    if len(values) > 1:
        mean = statistics.mean(values)
        out["cv_percent"] = 100 * statistics.stdev(values) / mean if mean else None
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        rank = round(q / 100 * len(ordered) + 0.5)
        return ordered[max(0, min(len(ordered) - 1, rank - 1))]

    return {"p50": at(50), "p90": at(90), "p99": at(99), "max": ordered[-1]}


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the lab's sender worker, Postfix's daemons)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time of a process (all its threads) and of its children, live
    (counted by themselves) or exited and reaped (counted in its own), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) or 0.0 for child in children(pid))


def vm_status(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS, in MB, of a process and its live children added up (the
    sum of the peaks bounds the peak of the sum), from /proc (psutil is not needed)."""
    out: dict[str, float] = {}
    for proc in (pid, *children(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = out.get(key, 0.0) + int(value.split()[0]) / 1024
    return out


# -- processes ----------------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts, each in its own process group, all stopped at
    the end (SIGTERM to the group, SIGKILL after a grace period)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []
        self.cleanups: list[Callable[[], None]] = []

    def spawn(self, argv: list[str], logfile: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        # Children left in the group (none expected): gone too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self.running:
            self.running.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self.cleanups.clear()
        for proc in list(self.running):
            with contextlib.suppress(Exception):
                self.stop(proc, grace=5.0)


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, timeout, f"port {port}", interval=0.01)


# -- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    smtp_source: str | None
    size: int

    @property
    def name(self) -> str:
        return "smtp-source -d" if self.smtp_source else "bench/loadgen.py (aiosmtplib)"

    def run(self, port: int, sessions: int, messages: int, rcpt: str) -> float:
        """Send ``messages`` over ``sessions`` connections; returns the elapsed seconds."""
        sessions = max(1, min(sessions, messages))
        bound = 120 + messages / 20  # a stuck server, not a slow one
        if self.smtp_source is None:
            doc = loadgen(port, sessions, messages, rcpt, self.size, bound)
            if doc["sent"] != messages:
                raise RuntimeError(f"loadgen sent {doc['sent']} of {messages}: {doc['errors']}")
            return float(doc["elapsed"])
        argv = [self.smtp_source, "-d", "-s", str(sessions), "-m", str(messages),
                "-l", str(self.size), "-f", SENDER, "-t", rcpt, "-M", CLIENT,
                f"127.0.0.1:{port}"]
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=bound)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0 or "fatal" in done.stderr:
            raise RuntimeError(f"smtp-source exited {done.returncode}: {done.stderr[-2000:]}")
        return elapsed


def loadgen(port: int, sessions: int, messages: int, rcpt: str, size: int,
            timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [PY, str(BENCH / "loadgen.py"), "--port", str(port), "--sessions", str(sessions),
         "--messages", str(messages), "--size", str(size), "--rcpt", rcpt,
         "--timeout", str(timeout)],
        capture_output=True, text=True, timeout=timeout + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- systems ------------------------------------------------------------------------------


class System:
    """A server under load. ``delivered`` counts what reached its store (None: nothing is
    stored, or it is stored before the 250, so end to end is the accepted rate)."""

    name = ""
    rcpt = "bench@bench.test"
    port = 0
    pid: int | None = None
    stores_before_250 = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def delivered(self) -> int | None:
        return None


class SmtpSink(System):
    name = "smtp-sink"

    def __init__(self, procs: Processes, top: Path, binary: str) -> None:
        self.procs, self.top, self.binary = procs, top, binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _ in range(3):  # the free port can be taken between the pick and the bind
            self.port = free_port()
            user = ["-u", "postfix"] if os.geteuid() == 0 else []
            self.proc = self.procs.spawn(
                [self.binary, *user, f"127.0.0.1:{self.port}", "1024"],
                self.top / "smtp-sink.log")
            try:
                wait_port(self.port, self.proc, 10)
            except RuntimeError:
                continue
            self.pid = self.proc.pid
            return
        raise RuntimeError("smtp-sink did not start; see smtp-sink.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


class AiosmtpdSink(System):
    def __init__(self, procs: Processes, top: Path, mode: str) -> None:
        self.procs, self.top, self.mode = procs, top, mode
        self.name = "aiosmtpd bare" if mode == "bare" else "aiosmtpd+SQLite commit/msg"
        self.stores_before_250 = mode == "sqlite"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready = self.top / f"sink-{self.mode}.port"
        argv = [PY, str(BENCH / "sinks.py"), self.mode, "--ready", str(ready)]
        if self.mode == "sqlite":
            argv += ["--db", str(self.top / "sink.sqlite")]
        self.proc = self.procs.spawn(argv, self.top / f"sink-{self.mode}.log")
        wait_until(ready.exists, 30, f"{self.name} start", interval=0.01)
        self.port = int(ready.read_text())
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


class Postfix(System):
    """A throw-away Postfix (own config, queue and data directories under /tmp, where the
    postfix user can reach them) accepting bench.test and delivering it with virtual(8)
    into one Maildir. Its defaults are kept (in_flow_delay and all)."""

    name = "Postfix (Maildir)"
    rcpt = POSTFIX_RCPT

    def __init__(self, procs: Processes, postfix: str, postconf: str) -> None:
        self.procs, self.postfix, self.postconf = procs, postfix, postconf
        self.top = Path(tempfile.mkdtemp(prefix="mailflow-bench-postfix-"))
        self.top.chmod(0o755)  # the postfix user must reach its queue and data directories
        self.config = self.top / "etc"
        self.maildir = self.top / "vmail" / "alice"
        self.started = False

    def _cmd(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([self.postfix, "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {done.stdout}{done.stderr}"
                               f"{self.maillog()[-3000:]}")
        return done.stdout + done.stderr

    def maillog(self) -> str:
        path = self.top / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        import pwd

        pw = pwd.getpwnam("postfix")
        self.config.mkdir()
        (self.top / "spool").mkdir()
        vmail = self.top / "vmail"
        vmail.mkdir()
        os.chown(vmail, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        shutil.copy("/etc/postfix/main.cf", self.config / "main.cf")
        (self.config / "master.cf").write_text(
            master_cf(Path("/etc/postfix/master.cf").read_text(), self.port))
        settings = {
            "queue_directory": str(self.top / "spool"),
            "data_directory": str(self.top / "lib"),
            "maillog_file": str(self.top / "maillog"),
            "maillog_file_prefixes": str(self.top),
            "syslog_name": f"mailflow-bench-postfix-{self.port}",
            "myhostname": "postfix.bench.test",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "virtual_mailbox_domains": "bench.test",
            "virtual_mailbox_base": str(vmail),
            "virtual_mailbox_maps": f"inline:{{{POSTFIX_RCPT}=alice/}}",
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
        }
        subprocess.run([self.postconf, "-c", str(self.config), "-e",
                        *(f"{k} = {v}" for k, v in settings.items())],
                       check=True, capture_output=True, timeout=60)
        self._cmd("check")
        self._cmd("start")
        self.started = True
        self.procs.cleanups.append(self.stop)
        wait_port(self.port, None, 30)
        pid_file = self.top / "spool" / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            self.pid = int(pid_file.read_text().split()[0])

    def delivered(self) -> int:
        count = 0
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                count += sum(1 for _ in os.scandir(self.maildir / sub))
        return count

    def delays(self, since: int = 0) -> list[float]:
        """delay= of every message delivered to the Maildir, from byte ``since`` of the log."""
        text = self.maillog()[since:]
        return [float(m.group(1)) for m in re.finditer(
            r"delay=([\d.]+),.*status=sent \(delivered to maildir\)", text)]

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._cmd("stop", check=False)
        master = self.pid

        def gone() -> bool:
            return master is None or not Path(f"/proc/{master}").exists()

        with contextlib.suppress(TimeoutError):
            wait_until(gone, 30, "postfix stop", interval=0.1)
        if master is not None and not gone():
            self._cmd("abort", check=False)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(master), signal.SIGKILL)
        shutil.rmtree(self.top, ignore_errors=True)


class Lab(System):
    """``mailflow run`` as users run it: the default scenario with every SMTP port picked by
    the system, a stopped clock (--speed 0), its own data directory."""

    name = "mailflow lab"
    rcpt = ALICE
    stores_before_250 = True

    def __init__(self, procs: Processes, top: Path, label: str, data: Path | None = None) -> None:
        self.procs = procs
        self.dir = top / label
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = data or self.dir / "data"
        self.scenario = self.dir / "mixed-2003.toml"
        text = resources.files("mailflow.scenarios").joinpath("mixed-2003.toml").read_text()
        self.scenario.write_text(re.sub(r"smtp_port = \d+", "smtp_port = 0", text))
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.token = ""
        self.info: dict[str, Any] = {}
        self.startups: list[float] = []

    def start(self) -> None:
        """Start the lab; records the seconds until /healthz answers 200."""
        for _ in range(3):  # the free HTTP port can be taken between the pick and the bind
            http_port = free_port()
            (self.data / "lab.json").unlink(missing_ok=True)
            argv = [PY, "-m", "mailflow", "run", "--scenario", str(self.scenario),
                    "--data", str(self.data), "--speed", "0", "--http", f"127.0.0.1:{http_port}"]
            t0 = time.perf_counter()
            self.proc = self.procs.spawn(argv, self.dir / "lab.log", cwd=self.dir)
            url = f"http://127.0.0.1:{http_port}/healthz"

            def healthy(url: str = url) -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the lab exited {self.proc.returncode}; see "
                                       f"{self.dir / 'lab.log'}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        return bool(r.status == 200)
                except (urllib.error.URLError, ConnectionError, OSError):
                    return False

            try:
                wait_until(healthy, 120, "lab /healthz", interval=0.005)
            except RuntimeError:
                continue
            self.startups.append(time.perf_counter() - t0)
            wait_until((self.data / "lab.json").exists, 30, "lab.json")
            self.info = json.loads((self.data / "lab.json").read_text())
            self.api_url = str(self.info["api"])
            self.token = (self.data / "api-token").read_text().strip()
            self.port = int(self.info["endpoints"]["EX2003-A"][1])
            self.pid = self.proc.pid
            return
        raise RuntimeError(f"the lab did not start; see {self.dir / 'lab.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc, grace=30)
            self.proc = None

    def api(self, method: str, path: str, body: Any = None, timeout: float = 300) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.api_url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            if r.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw.decode("utf-8", "replace")

    def timed_get(self, path: str, auth: bool = True) -> float:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        req = urllib.request.Request(self.api_url + path, headers=headers)
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
        return time.perf_counter() - t0

    def mailbox(self, address: str = ALICE) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v1/mailboxes/{address}"))

    def delivered(self) -> int:
        return int(self.mailbox()["message_count"])

    def queue_depth(self, server: str, queue: str) -> int:
        rows = self.api("GET", "/api/v1/queues")
        return sum(int(r["message_count"]) for r in rows
                   if r["server"] == server and r["queue"] == queue)

    def vm(self) -> dict[str, float]:
        return vm_status(self.pid) if self.pid else {}

    def hold(self, address: str, target: str) -> str:
        """A held move of ``address`` to ``target``, walked to step Held (its copy done on
        the lab clock), so that its mail parks in ``deferred`` and stays there across a
        restart (a move caught mid-copy would be rolled back by the restart)."""
        move = self.api("POST", "/api/v1/moves",
                        {"mailbox": address, "target": target, "hold": True})
        move_id = str(move["id"])

        def held() -> bool:
            doc = self.api("GET", f"/api/v1/moves/{move_id}")
            if doc.get("step") != "Held" and doc.get("status_detail") != "Held":
                self.api("POST", "/api/v1/clock/advance", {"seconds": 120})
                return False
            return True

        wait_until(held, 60, "the move to reach Held", interval=0.05)
        if not self.mailbox(address)["in_transit"]:
            raise RuntimeError(f"{address} is not in transit behind move {move_id}")
        return move_id


# -- measurements -------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes
    top: Path
    load: Load
    results: dict[str, Any] = field(default_factory=dict)

    def point(self, system: System, sessions: int, messages: int) -> dict[str, Any]:
        """One load run; accepted and end-to-end rates."""
        before = system.delivered()
        la = loadavg()
        # Postfix is many processes; the others are one (the lab's threads and worker included).
        pid = None if isinstance(system, Postfix) else system.pid
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        accepted_s = self.load.run(system.port, sessions, messages, system.rcpt)
        out: dict[str, Any] = {"sessions": sessions, "messages": messages,
                               "accepted_s": accepted_s, "accepted_rate": messages / accepted_s,
                               "loadavg_before": la}
        if before is not None:
            target = before + messages
            wait_until(lambda: (system.delivered() or 0) >= target, 120 + messages / 10,
                       f"{system.name}: {messages} delivered", interval=0.02)
            e2e = time.perf_counter() - t0
            out.update(e2e_s=e2e, e2e_rate=messages / e2e)
        elif system.stores_before_250:
            out.update(e2e_s=accepted_s, e2e_rate=messages / accepted_s)
        cpu1 = cpu_seconds(pid)
        if cpu0 is not None and cpu1 is not None:
            # CPU of the server per message: far less sensitive to a busy machine than rates.
            out["cpu_ms_per_msg"] = 1000 * (cpu1 - cpu0) / messages
        return out

    # -- rates, all systems in one run --------------------------------------------------

    def rates(self, systems: list[System]) -> None:
        args = self.args
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: {} for s in systems}
        # Warm-up (first connections, SQLite files, Postfix processes), not recorded.
        for system in systems:
            self.point(system, 5, min(200, args.messages))
        # The headline: 20 sessions, the systems taken in turn, repeated.
        for rep in range(args.repeats):
            for system in systems:
                result = self.point(system, 20, args.messages)
                runs[system.name].setdefault(20, []).append(result)
                log(f"{system.name:28} 20 sessions run {rep + 1}: "
                    f"{result['accepted_rate']:7.0f} msg/s accepted"
                    + (f", {result['e2e_rate']:7.0f} end to end" if "e2e_rate" in result else "")
                    + (f", {result['cpu_ms_per_msg']:.2f} CPU ms/msg"
                       if "cpu_ms_per_msg" in result else ""))
        for sessions in args.sessions:
            if sessions == 20:
                continue
            for system in systems:
                result = self.point(system, sessions, args.sweep_messages)
                runs[system.name].setdefault(sessions, []).append(result)
                log(f"{system.name:28} {sessions:2} sessions: "
                    f"{result['accepted_rate']:7.0f} msg/s accepted"
                    + (f", {result['e2e_rate']:7.0f} end to end" if "e2e_rate" in result else ""))
        self.results["rates"] = {
            name: {
                str(s): {
                    "accepted_rate": summary([r["accepted_rate"] for r in rs]),
                    **({"cpu_ms_per_msg": summary([r["cpu_ms_per_msg"] for r in rs])}
                       if "cpu_ms_per_msg" in rs[0] else {}),
                    **({"e2e_rate": summary([r["e2e_rate"] for r in rs])}
                       if "e2e_rate" in rs[0] else {}),
                    "runs": rs,
                }
                for s, rs in sorted(by_sessions.items())
            }
            for name, by_sessions in runs.items()
        }

    def latency(self, systems: list[System]) -> None:
        """Per-message latency at 20 sessions with the aiosmtplib generator."""
        out: dict[str, Any] = {}
        for system in systems:
            if isinstance(system, SmtpSink):
                continue
            since = len(system.maillog()) if isinstance(system, Postfix) else 0
            before = system.delivered()
            doc = loadgen(system.port, 20, self.args.latency_messages, system.rcpt,
                          self.args.size, 600)
            entry: dict[str, Any] = {"client_ms": doc["latency_ms"], "rate": doc["rate"],
                                     "sent": doc["sent"], "refused": doc["refused"]}
            if isinstance(system, Postfix) and before is not None:
                target = before + doc["sent"]
                wait_until(lambda s=system, t=target: s.delivered() >= t, 300,
                           "Postfix latency probe delivered")
                delays = system.delays(since)
                entry["postfix_delay_ms"] = {k: (v * 1000 if v is not None else None)
                                             for k, v in percentiles(delays).items()}
            out[system.name] = entry
            log(f"{system.name:28} latency p50 {doc['latency_ms']['p50']:.1f} ms, "
                f"p99 {doc['latency_ms']['p99']:.1f} ms (loadgen {doc['rate']:.0f} msg/s)")
        self.results["latency"] = {"generator": "bench/loadgen.py, 20 sessions",
                                   "messages": self.args.latency_messages, "systems": out}

    # -- the lab alone ------------------------------------------------------------------

    def park(self, lab: Lab, messages: int, chunk: int | None = None) -> dict[str, Any]:
        """Send ``messages`` to alice (held: they park in deferred); returns load figures."""
        chunk = chunk or messages
        sent, elapsed = 0, 0.0
        rss_curve: list[tuple[int, float]] = []
        chunk_rates: list[tuple[int, float]] = []
        while sent < messages:
            n = min(chunk, messages - sent)
            took = self.load.run(lab.port, 20, n, ALICE)
            elapsed += took
            sent += n
            rss_curve.append((sent, lab.vm().get("VmRSS", 0.0)))
            chunk_rates.append((sent, n / took))
            if chunk < messages:
                log(f"  parked {sent}/{messages} (this chunk {n / took:.0f} msg/s),"
                    f" RSS {rss_curve[-1][1]:.0f} MB")
        depth = lab.queue_depth("EX2003-A", "deferred")
        if depth != messages:
            raise RuntimeError(f"{depth} parked in deferred, {messages} sent")
        return {"messages": messages, "accepted_s": elapsed, "accepted_rate": messages / elapsed,
                "rss_mb_curve": rss_curve, "chunk_rates": chunk_rates}

    def drain(self, mode: str, messages: int) -> dict[str, Any]:
        """Park ``messages`` behind a held move of alice to EX2003-B, then release them:
        ``local``: fail the move (alice stays on EX2003-A, mail delivered there);
        ``hop``: complete it (the mail relayed over SMTP to EX2003-B and delivered there)."""
        lab = Lab(self.procs, self.top, f"lab-drain-{mode}-{messages}")
        lab.start()
        try:
            move = lab.hold(ALICE, "EX2003-B")
            parked = self.park(lab, messages)
            action = "fail" if mode == "local" else "complete"
            la = loadavg()
            wall0 = time.time()
            cpu0, t0 = cpu_seconds(lab.pid), time.perf_counter()
            lab.api("POST", f"/api/v1/moves/{move}/{action}")
            request_s = time.perf_counter() - t0
            wait_until(lambda: lab.delivered() >= messages, 120 + messages / 5,
                       f"drain {mode}", interval=0.05)
            drain_s, cpu1 = time.perf_counter() - t0, cpu_seconds(lab.pid)
            box = lab.mailbox()
            expected = "EX2003-A" if mode == "local" else "EX2003-B"
            if box["server"] != expected or box["message_count"] != messages:
                raise RuntimeError(f"after the drain: {box['server']} {box['message_count']}")
            left = [r for r in lab.api("GET", "/api/v1/queues") if r["message_count"]]
            result = {
                "mode": mode, "messages": messages, "action": action, "parked": parked,
                "request_s": request_s, "drain_s": drain_s, "rate": messages / drain_s,
                "cpu_ms_per_msg": (None if cpu0 is None or cpu1 is None
                                   else 1000 * (cpu1 - cpu0) / messages),
                "latency_ms": release_latencies(lab.data / "mailflow.db", wall0, expected),
                "queues_left": left, "vm_mb": lab.vm(), "loadavg_before": la,
                "startup_s": lab.startups[-1],
            }
            log(f"drain {mode:5} {messages:6}: {result['rate']:7.0f} msg/s "
                f"({drain_s:.2f} s; the {action} request took {request_s:.2f} s;"
                f" {fmt(result['cpu_ms_per_msg'], 2)} CPU ms/msg)")
            return result
        finally:
            lab.stop()

    def deep(self, messages: int, clone: int | None) -> dict[str, Any]:
        lab = Lab(self.procs, self.top, f"lab-deep-{messages}")
        lab.start()
        out: dict[str, Any] = {"messages": messages, "startup_empty_s": lab.startups[-1]}
        try:
            move = lab.hold(ALICE, "EX2003-B")
            out["parked"] = self.park(lab, messages, chunk=self.args.deep_chunk)
            out["loaded"] = self.reads(lab, messages)
            lab.stop()
            lab.start()
            out["restart_s"] = lab.startups[-1]
            out["restarted"] = self.reads(lab, messages)
            if clone and clone > messages:
                lab.stop()
                t0 = time.perf_counter()
                total = amplify(lab.data / "mailflow.db", clone)
                out["clone"] = {"target": clone, "queued": total,
                                "copy_s": time.perf_counter() - t0}
                lab.start()
                out["clone"]["restart_s"] = lab.startups[-1]
                out["clone"]["reads"] = self.reads(lab, total)
            if self.args.deep_release:
                queued = out.get("clone", {}).get("queued", messages)
                out["release"] = self.release_deep(lab, move, queued)
        finally:
            lab.stop()
        return out

    def release_deep(self, lab: Lab, move: str, queued: int) -> dict[str, Any]:
        """Fail the held move with the whole deep queue behind it (local delivery at the
        source): the drain rate at that depth and the peak RSS it costs."""
        before = lab.vm()
        wall0 = time.time()
        t0 = time.perf_counter()
        lab.api("POST", f"/api/v1/moves/{move}/fail", timeout=max(300.0, queued / 50))
        request_s = time.perf_counter() - t0
        wait_until(lambda: lab.delivered() >= queued, 120 + queued / 5, "deep release",
                   interval=0.1)
        drain_s = time.perf_counter() - t0
        result = {"messages": queued, "request_s": request_s, "drain_s": drain_s,
                  "rate": queued / drain_s, "vm_mb_before": before, "vm_mb": lab.vm(),
                  "latency_ms": release_latencies(lab.data / "mailflow.db", wall0, "EX2003-A")}
        log(f"  released {queued} (move failed, local delivery): {result['rate']:.0f} msg/s"
            f" ({drain_s:.1f} s), peak RSS {result['vm_mb'].get('VmHWM', 0):.0f} MB")
        return result

    def reads(self, lab: Lab, expected: int) -> dict[str, Any]:
        """Scrape /metrics, list the queues (API and CLI) with a deep queue; RSS."""
        depth = lab.queue_depth("EX2003-A", "deferred")
        # What the idle lab costs with this queue (its scheduler ticks every 0.2 s).
        cpu0, t0 = cpu_seconds(lab.pid), time.perf_counter()
        time.sleep(self.args.idle_seconds)
        cpu1, idle_wall = cpu_seconds(lab.pid), time.perf_counter() - t0
        idle_cpu = (100 * (cpu1 - cpu0) / idle_wall
                    if cpu0 is not None and cpu1 is not None else None)
        metrics = [lab.timed_get("/metrics", auth=False) for _ in range(self.args.read_repeats)]
        api_queues = [lab.timed_get("/api/v1/queues") for _ in range(self.args.read_repeats)]
        cli: list[float] = []
        for _ in range(max(1, self.args.read_repeats // 2)):
            t0 = time.perf_counter()
            done = subprocess.run([PY, "-m", "mailflow", "queues", "--data", str(lab.data)],
                                  capture_output=True, text=True, timeout=300, cwd=lab.dir)
            cli.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise RuntimeError(f"mailflow queues: {done.stderr}")
        result = {"deferred": depth, "expected": expected,
                  "metrics_s": summary(metrics), "api_queues_s": summary(api_queues),
                  "cli_queues_s": summary(cli), "vm_mb": lab.vm(), "idle_cpu_percent": idle_cpu}
        log(f"  {depth} queued: /metrics {result['metrics_s']['median'] * 1000:.0f} ms, "
            f"GET queues {result['api_queues_s']['median'] * 1000:.0f} ms, "
            f"mailflow queues {result['cli_queues_s']['median']:.2f} s, "
            f"RSS {result['vm_mb'].get('VmRSS', 0):.0f} MB"
            f" (peak {result['vm_mb'].get('VmHWM', 0):.0f}), idle CPU {fmt(idle_cpu)}%")
        return result

    def startup(self, others: list[float]) -> dict[str, Any]:
        """Start and stop one lab ``--startup-repeats`` times (its first start on a new data
        directory); every other lab start of the run (``others``) counts too."""
        lab = Lab(self.procs, self.top, "lab-startup")
        try:
            for _ in range(self.args.startup_repeats):
                lab.start()
                lab.stop()
        finally:
            lab.stop()
        return {"fresh_data_dir_s": lab.startups[0] if lab.startups else None,
                "existing_data_dir_s": summary(lab.startups[1:]),
                "all_s": lab.startups + others}


def release_latencies(db: Path, wall0: float, server: str) -> dict[str, float | None] | None:
    """Per message: real time from the release request to its delivery, from the lab's own
    trace (read-only). None when the store has no such trace."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT real_time FROM trace WHERE stage='delivered' AND server=?", (server,)
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return {k: (v * 1000 if v is not None else None)
            for k, v in percentiles([r[0] - wall0 for r in rows]).items()}


def amplify(db: Path, target: int) -> int:
    """Copy the parked messages (their messages, pairs and trace rows) in SQL until about
    ``target`` are queued; the lab must be stopped. Returns the number queued."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        cols = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
                for t in ("messages", "pairs", "trace")}
        base = [r[0] for r in conn.execute(
            "SELECT DISTINCT message FROM pairs WHERE queue='deferred'")]
        if not base:
            raise RuntimeError("nothing parked to copy")
        conn.execute("CREATE TEMP TABLE base(id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO base VALUES (?)", ((m,) for m in base))

        def copy(table: str, key: str, rnd: int, skip: tuple[str, ...] = ()) -> None:
            names = [c for c in cols[table] if c not in skip]
            exprs = [f"'x' || printf('%04x', {rnd}) || substr({key}, 6)" if c == key else c
                     for c in names]
            conn.execute(f"INSERT INTO {table}({','.join(names)}) SELECT {','.join(exprs)}"
                         f" FROM {table} WHERE {key} IN (SELECT id FROM base)")

        rounds = max(0, -(-target // len(base)) - 1)
        for rnd in range(1, rounds + 1):
            conn.execute("BEGIN")
            copy("messages", "id", rnd)
            copy("pairs", "message", rnd, skip=("id",))
            copy("trace", "message", rnd, skip=("id",))
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute(
            "SELECT COUNT(*) FROM pairs WHERE queue='deferred'").fetchone()[0])
    finally:
        conn.close()


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    postfix = ""
    if tool("postconf"):
        with contextlib.suppress(Exception):
            postfix = subprocess.run([str(tool("postconf")), "-d", "-h", "mail_version"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
    import aiosmtpd

    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "memory": mem,
        "kernel": platform.release(), "python": platform.python_version(),
        "aiosmtpd": getattr(aiosmtpd, "__version__", ""), "postfix": postfix,
        "loadavg_start": os.getloadavg(),
    }


def median_of(results: dict[str, Any], system: str, key: str, sessions: int = 20) -> float | None:
    with contextlib.suppress(KeyError, TypeError):
        return float(results["rates"][system][str(sessions)][key]["median"])
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    lab, bare, postfix = "mailflow lab", "aiosmtpd bare", "Postfix (Maildir)"
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float | None, *, above: bool,
            unit: str = "", note: str = "") -> None:
        passed = None if value is None or limit is None else (
            value >= limit if above else value < limit)
        out.append({"target": name, "value": value, "limit": limit, "unit": unit,
                    "pass": passed, "note": note})

    lab_e2e = median_of(results, lab, "e2e_rate")
    bare_rate = median_of(results, bare, "accepted_rate")
    pf_e2e = median_of(results, postfix, "e2e_rate")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    add("1a lab end to end / bare aiosmtpd", ratio(lab_e2e, bare_rate), TARGET_E2E_VS_BARE,
        above=True, unit="x")
    add("1b lab end to end / Postfix end to end", ratio(lab_e2e, pf_e2e), TARGET_E2E_VS_POSTFIX,
        above=True, unit="x")
    for mode, label in (("local", "2a release drain, local"),
                        ("hop", "2b release drain, SMTP hop")):
        drains = [d for d in results.get("drain", []) if d["mode"] == mode]
        if drains:
            worst = min(drains, key=lambda d: d["rate"])
            add(f"{label} / bare aiosmtpd", ratio(worst["rate"], bare_rate), TARGET_DRAIN_VS_BARE,
                above=True, unit="x",
                note="slowest size: " + ", ".join(f"{d['messages']}: {d['rate']:.0f}/s"
                                                  for d in drains))
    deep = results.get("deep")
    if deep:
        biggest = deep.get("clone", {}).get("reads") or deep["restarted"]
        queued = biggest["deferred"]
        peak = max([deep["loaded"]["vm_mb"].get("VmHWM", 0), deep["restarted"]["vm_mb"].get(
            "VmHWM", 0), biggest["vm_mb"].get("VmHWM", 0)])
        size_note = f"at {queued} queued" + ("" if queued >= TARGET_DEEP else
                                             f" (target is at {TARGET_DEEP})")
        add("3 peak RSS with the deep queue", peak, TARGET_RSS_MB, above=False, unit="MB",
            note=size_note + " (queued and read)")
        if "release" in deep:
            rel = deep["release"]
            add("3 peak RSS releasing the deep queue", rel["vm_mb"].get("VmHWM"), TARGET_RSS_MB,
                above=False, unit="MB", note=f"{rel['messages']} released at once")
            add("2a release drain, local, deep queue / bare aiosmtpd",
                ratio(rel["rate"], bare_rate), TARGET_DRAIN_VS_BARE, above=True, unit="x",
                note=f"{rel['messages']} released at once: {rel['rate']:.0f}/s")
        add("4a /metrics scrape (max)", biggest["metrics_s"]["max"], TARGET_METRICS_S,
            above=False, unit="s", note=size_note)
        add("4b mailflow queues (max)", biggest["cli_queues_s"]["max"], TARGET_QUEUES_S,
            above=False, unit="s", note=size_note)
    starts = results.get("startup")
    if starts:
        worst_start = max(starts["all_s"])
        add("5 startup to /healthz (max)", worst_start, TARGET_STARTUP_S, above=False, unit="s",
            note=f"median {statistics.median(starts['all_s']):.2f} s over {len(starts['all_s'])}"
                 " starts (fresh and existing data directories)")
    return out


def summary_text(values: list[float], unit: str, digits: int = 0) -> str:
    if not values:
        return "-"
    return (f"median {statistics.median(values):.{digits}f} {unit},"
            f" min {min(values):.{digits}f}, max {max(values):.{digits}f}")


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    rates = results.get("rates", {})
    bare = median_of(results, "aiosmtpd bare", "accepted_rate")
    pf = median_of(results, "Postfix (Maildir)", "e2e_rate")
    lines.append(f"Rates at 20 sessions, {results['config']['size']} B bodies, "
                 f"{results['config']['messages']} messages x {results['config']['repeats']} "
                 f"runs (median [min-max]), load: {results['config']['load']}")
    lines.append(f"{'system':30} {'accepted/s':>20} {'end to end/s':>20} {'/bare':>6} "
                 f"{'/Postfix e2e':>12} {'CPU ms/msg':>10}")
    for name, by in rates.items():
        at = by.get("20")
        if not at:
            continue
        acc = at["accepted_rate"]
        e2e = at.get("e2e_rate")
        main = (e2e or acc)["median"]
        e2e_cell = f"{fmt(e2e['median'])} [{fmt(e2e['min'])}-{fmt(e2e['max'])}]" if e2e else "-"
        lines.append(
            f"{name:30} {fmt(acc['median']):>7} [{fmt(acc['min'])}-{fmt(acc['max'])}]"
            f" {e2e_cell:>20}"
            f" {fmt(main / bare if bare else None, 2):>6} {fmt(main / pf if pf else None, 2):>12}"
            f" {fmt(at.get('cpu_ms_per_msg', {}).get('median'), 2):>10}")
    lines.append("")
    sessions = sorted({int(s) for by in rates.values() for s in by})
    if sessions:
        lines.append("Sweep (accepted msg/s; end to end in brackets where it differs):")
        lines.append(f"{'system':30} " + " ".join(f"{s:>14}" for s in sessions))
        for name, by in rates.items():
            cells = []
            for s in sessions:
                at = by.get(str(s))
                if not at:
                    cells.append(f"{'-':>14}")
                    continue
                cell = fmt(at["accepted_rate"]["median"])
                if "e2e_rate" in at and name in ("Postfix (Maildir)",):
                    cell += f" ({fmt(at['e2e_rate']['median'])})"
                cells.append(f"{cell:>14}")
            lines.append(f"{name:30} " + " ".join(cells))
        lines.append("")
    lat = results.get("latency", {}).get("systems", {})
    if lat:
        lines.append("Latency, MAIL to the 250 of DATA (bench/loadgen.py, 20 sessions):")
        for name, entry in lat.items():
            c = entry["client_ms"]
            extra = ""
            if "postfix_delay_ms" in entry:
                d = entry["postfix_delay_ms"]
                extra = f"; Postfix delay= p50 {fmt(d['p50'], 0)} ms p99 {fmt(d['p99'], 0)} ms"
            lines.append(f"  {name:28} p50 {fmt(c['p50'], 1):>7} ms  p99 {fmt(c['p99'], 1):>7} ms"
                         f"  (at {fmt(entry['rate'])} msg/s){extra}")
        lines.append("")
    for d in results.get("drain", []):
        lat_ms = d.get("latency_ms") or {}
        lines.append(f"Release drain {d['mode']:5} {d['messages']:>7}: {fmt(d['rate']):>6} msg/s"
                     f" ({d['drain_s']:.2f} s, {d['action']} request {d['request_s']:.2f} s;"
                     f" release-to-delivery p50 {fmt(lat_ms.get('p50'))} ms"
                     f" p99 {fmt(lat_ms.get('p99'))} ms;"
                     f" {fmt(d.get('cpu_ms_per_msg'), 2)} CPU ms/msg)"
                     + (f" = {d['rate'] / bare:.2f} x bare" if bare else ""))
    deep = results.get("deep")
    if deep:
        lines.append("")
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
            r = deep["release"]
            lines.append(f"Deep queue released (move failed, local delivery): {r['messages']}"
                         f" in {r['drain_s']:.1f} s = {fmt(r['rate'])} msg/s"
                         + (f" = {r['rate'] / bare:.2f} x bare" if bare else "")
                         + f"; peak RSS {fmt(r['vm_mb'].get('VmHWM'))} MB"
                         f" (before: {fmt(r['vm_mb_before'].get('VmHWM'))} MB)")
        lines.append(f"Deep queue parked at {fmt(deep['parked']['accepted_rate'])} msg/s;"
                     f" restart with it: {deep['restart_s']:.2f} s"
                     + (f"; with the SQL copy: {deep['clone']['restart_s']:.2f} s"
                        if "clone" in deep else ""))
    starts = results.get("startup")
    if starts:
        lines.append(f"Startup to /healthz: fresh data directory "
                     f"{fmt(starts['fresh_data_dir_s'], 2)} s, existing "
                     f"{fmt(starts['existing_data_dir_s'].get('median'), 2)} s (median); all"
                     f" {len(starts['all_s'])} starts: " + summary_text(starts["all_s"], "s", 2))
    lines.append("")
    lines.append("Targets:")
    for t in results.get("targets", []):
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        op = ">=" if t["target"][0] in "12" else "<"
        lines.append(f"  {verdict:4} {t['target']:42} {fmt(t['value'], 2):>8} {t['unit']}"
                     f" (needs {op} {t['limit']}) {t['note']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, by in results["rates"].items():
        xs = sorted(int(s) for s in by)

        def bars(key: str, by: dict[str, Any] = by, xs: list[int] = xs) -> dict[str, Any]:
            mid = [by[str(s)][key]["median"] for s in xs]
            low = [m - by[str(s)][key]["min"] for m, s in zip(mid, xs, strict=True)]
            high = [by[str(s)][key]["max"] - m for m, s in zip(mid, xs, strict=True)]
            return {"x": xs, "y": mid, "yerr": [low, high], "capsize": 3}

        stored = {"mailflow lab": " (accepted = delivered)",
                  "aiosmtpd+SQLite commit/msg": " (accepted = stored)"}.get(name, " (accepted)")
        ax.errorbar(**bars("accepted_rate"), marker="o", label=name + stored)
        if name == "Postfix (Maildir)":
            ax.errorbar(**bars("e2e_rate"), marker="x", linestyle="--",
                        label=f"{name} (end to end)")
    ax.set_xscale("log")
    xs_all = sorted({int(s) for by in results["rates"].values() for s in by})
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


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--plot", type=Path, help="write the rate-vs-sessions plot here (PNG)")
    p.add_argument("--systems", default="smtp-sink,bare,sqlite,postfix,lab",
                   help="comma-separated subset of smtp-sink,bare,sqlite,postfix,lab")
    p.add_argument("--sessions", default="1,5,20,50", help="sessions swept for the plot")
    p.add_argument("--messages", type=int, help="messages per 20-session run")
    p.add_argument("--sweep-messages", type=int, help="messages per other sweep point")
    p.add_argument("--repeats", type=int, help="runs of the 20-session point")
    p.add_argument("--latency-messages", type=int, help="messages of the latency probe (0: none)")
    p.add_argument("--drain", help="comma-separated drain sizes (0: none)")
    p.add_argument("--deep", type=int, help="messages parked for the deep-queue reads (0: none)")
    p.add_argument("--deep-clone", type=int,
                   help="then copy the parked rows in SQL up to this many (0: no copy)")
    p.add_argument("--deep-chunk", type=int, default=20_000)
    p.add_argument("--no-deep-release", dest="deep_release", action="store_false",
                   help="do not release the deep queue at the end (local drain, peak RSS)")
    p.add_argument("--read-repeats", type=int, default=5)
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="how long the idle lab's CPU is measured with the deep queue")
    p.add_argument("--startup-repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=2048, help="message body bytes (smtp-source -l)")
    p.add_argument("--loadgen", action="store_true",
                   help="load with bench/loadgen.py even when smtp-source is installed")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--from-json", type=Path,
                   help="measure nothing: print the table (and --plot) of an earlier --out")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "messages": 1_000 if quick else 6_000,
        "sweep_messages": 500 if quick else 3_000,
        "repeats": 1 if quick else 3,
        "latency_messages": 300 if quick else 2_000,
        "drain": "500" if quick else "3000,10000",
        "deep": 2_000 if quick else 50_000,
        "deep_clone": 0 if quick else TARGET_DEEP,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.idle_seconds = min(args.idle_seconds, 1.0)
        args.read_repeats = min(args.read_repeats, 3)
        args.startup_repeats = min(args.startup_repeats, 3)
    args.sessions = [int(s) for s in args.sessions.split(",") if s]
    if 20 not in args.sessions:
        args.sessions.append(20)
    args.drain = [int(s) for s in str(args.drain).split(",") if s and int(s) > 0]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        earlier = json.loads(args.from_json.read_text())
        earlier["targets"] = targets(earlier)
        print(table(earlier))
        if args.plot and "rates" in earlier and plot(earlier, args.plot):
            log(f"wrote {args.plot}")
        return 0
    smtp_source = None if args.loadgen else tool("smtp-source")
    load = Load(smtp_source, args.size)
    top = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    procs = Processes()
    results: dict[str, Any] = {
        "command": " ".join([Path(PY).name, *sys.argv]) if argv is None else
        " ".join(["bench/run.py", *argv]),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {"quick": args.quick, "messages": args.messages,
                   "sweep_messages": args.sweep_messages, "repeats": args.repeats,
                   "sessions": args.sessions, "size": args.size, "load": load.name,
                   "latency_messages": args.latency_messages, "drain": args.drain,
                   "deep": args.deep, "deep_clone": args.deep_clone, "systems": args.systems},
    }
    bench = Bench(args, procs, top, load, results)

    def interrupted(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    t_start = time.perf_counter()
    try:
        log(f"work directory {top}; load: {load.name}")
        systems: list[System] = []
        if "smtp-sink" in args.systems:
            sink = tool("smtp-sink")
            if sink and smtp_source:
                systems.append(SmtpSink(procs, top, sink))
            else:
                log("smtp-sink (or smtp-source) is not installed: no ceiling measured")
        if "bare" in args.systems:
            systems.append(AiosmtpdSink(procs, top, "bare"))
        if "sqlite" in args.systems:
            systems.append(AiosmtpdSink(procs, top, "sqlite"))
        if "postfix" in args.systems:
            postfix, postconf = tool("postfix"), tool("postconf")
            usable = os.geteuid() == 0 and Path("/etc/postfix/master.cf").exists()
            if postfix and postconf and usable:
                systems.append(Postfix(procs, postfix, postconf))
            else:
                log("Postfix is not installed (or not root): Postfix is left out")
        rate_lab = None
        if "lab" in args.systems:
            rate_lab = Lab(procs, top, "lab-rates")
            systems.append(rate_lab)
        for system in systems:
            system.start()
            log(f"started {system.name} on port {system.port}")
        bench.rates(systems)
        if args.latency_messages:
            bench.latency(systems)
        if rate_lab is not None:
            results["lab_rates_vm_mb"] = rate_lab.vm()
            results["lab_rates_startup_s"] = rate_lab.startups
        for system in systems:
            system.stop()
        if "lab" in args.systems:
            results["drain"] = [bench.drain(mode, n) for n in args.drain
                                for mode in ("local", "hop")]
            if args.deep:
                results["deep"] = bench.deep(args.deep, args.deep_clone)
            others = [*(results.get("lab_rates_startup_s") or []),
                      *(d["startup_s"] for d in results["drain"])]
            if "deep" in results:
                others += [results["deep"]["startup_empty_s"], results["deep"]["restart_s"]]
                if "clone" in results["deep"]:
                    others.append(results["deep"]["clone"]["restart_s"])
            results["startup"] = bench.startup(others)
        results["targets"] = targets(results)
        results["elapsed_s"] = time.perf_counter() - t_start
        results["machine"]["loadavg_end"] = os.getloadavg()
        print(table(results))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            log(f"wrote {args.out}")
        if args.plot and "rates" in results and plot(results, args.plot):
            log(f"wrote {args.plot}")
        return 0
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            log(f"kept {top}")


if __name__ == "__main__":
    sys.exit(main())
