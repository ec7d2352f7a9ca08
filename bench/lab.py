"""The lab as a system under load: ``mailflow run`` as users run it, driven over its API.

In: the process registry, a work directory and a label (its own data directory, or one
given), the store (None: SQLite in the data directory; else a PostgreSQL URL) and the
servers it runs (None: all). Out: a started lab (its SMTP port of EX2003-A, or of its
first server, its endpoints, pid, API URL and token), the seconds each start took to a
200 from /healthz, and calls on its HTTP API: mailbox counts, queue depths, RSS, and
held moves that park mail in ``deferred``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from bench.probes import vm_status
from bench.procs import PY, Processes, free_port, wait_until
from bench.results import LAB
from bench.systems import System

ALICE = "alice@contoso.test"


class Lab(System):
    """``mailflow run`` as users run it: the default scenario with every SMTP port picked by
    the system, a stopped clock (--speed 0), its own data directory."""

    name = LAB
    rcpt = ALICE
    stores_before_250 = True

    def __init__(self, procs: Processes, top: Path, label: str, data: Path | None = None,
                 store: str | None = None, servers: list[str] | None = None) -> None:
        self.procs = procs
        self.store = store
        self.servers = servers
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
        self.endpoints: dict[str, int] = {}
        self.startups: list[float] = []

    def start(self) -> None:
        """Start the lab; records the seconds until /healthz answers 200."""
        for _ in range(3):  # the free HTTP port can be taken between the pick and the bind
            http_port = free_port()
            (self.data / "lab.json").unlink(missing_ok=True)
            argv = [PY, "-m", "mailflow", "run", "--scenario", str(self.scenario),
                    "--data", str(self.data), "--speed", "0", "--http", f"127.0.0.1:{http_port}"]
            if self.store:
                argv += ["--store", self.store]
            if self.servers:
                argv += ["--servers", ",".join(self.servers)]
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
            self.endpoints = {name: int(hp[1]) for name, hp in self.info["endpoints"].items()}
            self.port = self.endpoints.get("EX2003-A") or next(iter(self.endpoints.values()))
            self.pid = self.proc.pid
            return
        raise RuntimeError(f"the lab did not start; see {self.dir / 'lab.log'}")

    @property
    def store_location(self) -> Path | str:
        """Where its state is: the PostgreSQL URL, or the data directory's SQLite file."""
        return self.store or self.data / "mailflow.db"

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

