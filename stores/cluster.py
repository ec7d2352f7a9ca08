"""The processes of one lab that share a PostgreSQL store: who runs which server, who leads.

In: one process's own autocommit connection (``Membership``), its id and the servers it
runs. Out: the servers it claimed, whether it leads the organization, its row in
``processes`` and its servers' rows in ``endpoints`` (where the others hop to them), the
live processes and their endpoints, and the organization's clock.

Claims and leadership are PostgreSQL session advisory locks held by that connection: the
server drops them when the process dies (kill -9 closes its socket) or its connection
breaks, so no lease needs to expire before another process may take over. The rows are
bookkeeping for the others (addresses, heartbeats, how far each has settled), written
with ``synchronous_commit`` off: a heartbeat lost in a crash is written again at the next
tick.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# Advisory lock keys: the leader's (one bigint), and a server's (two int4: this class, and a
# checksum of its name; names that collide would only share a claim, never lose one).
LEADER_LOCK = 0x6D61696C666C6F78  # "mailflox": next to stores.pg's MIGRATE_LOCK
SERVER_LOCK_CLASS = 0x6D66  # "mf"
# The meta key of the organization's clock (``ClockBase`` as JSON).
CLOCK_KEY = "clock_base"


@dataclass(frozen=True)
class ClockBase:
    """The organization's clock: simulated time ``sim`` at Unix real time ``real``, running
    at ``speed`` simulated seconds per real second from there."""

    sim: float
    real: float
    speed: float

    def at(self, real: float) -> float:
        return self.sim + max(0.0, real - self.real) * self.speed


@dataclass(frozen=True)
class Process:
    id: str
    pid: int
    host: str
    servers: tuple[str, ...]
    api: str
    leader: bool
    heartbeat: float
    settled: float

    def doc(self) -> dict[str, Any]:
        """As ``GET /api/v1/processes`` shows it."""
        return {"api": self.api, "host": self.host, "pid": self.pid,
                "servers": list(self.servers), "leader": self.leader,
                "heartbeat": self.heartbeat, "settled": self.settled}


@dataclass(frozen=True)
class Address:
    """Where the process that runs a server takes its hop mail, and its clients' mail."""

    server: str
    process: str
    hop: tuple[str, int]
    smtp: tuple[str, int]


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """``method``, raising ``StoreError`` for PostgreSQL's errors as the stores do."""
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        from stores.pg import classified

        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise classified(exc) from exc

    return call


def _server_key(server: str) -> int:
    # int4 range: the CRC's top bit becomes the sign.
    crc = zlib.crc32(server.upper().encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class Membership:
    """One process's seat in the organization, on a connection of its own (not thread-safe:
    the runtime calls it from one thread). Its calls raise ``StoreError``, as the stores'."""

    def __init__(self, url: str, process: str) -> None:
        from stores.pg import PgConn  # psycopg is loaded only by a lab that uses it

        self.process = process
        self.conn = PgConn(url)
        self.conn.raw.execute("SET synchronous_commit = off")
        self.leading = False
        self.claimed: tuple[str, ...] = ()

    @_guarded
    def reconnect(self) -> None:
        """After the connection broke: a new one, holding nothing yet."""
        self.conn.ensure_open()
        self.conn.raw.execute("SET synchronous_commit = off")
        self.leading = False
        self.claimed = ()

    @_guarded
    def claim(self, servers: Iterable[str]) -> list[str]:
        """Claim ``servers`` for this process; returns those another process holds (and then
        claims none)."""
        wanted = tuple(servers)
        taken = [s for s in wanted if not self._try_lock(s)]
        if taken:
            self.conn.raw.execute("SELECT pg_advisory_unlock_all()")
            self.leading = False
            return taken
        self.claimed = wanted
        return []

    def _try_lock(self, server: str) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(?, ?)",
                                (SERVER_LOCK_CLASS, _server_key(server))).fetchone()
        return bool(row and row[0])

    @_guarded
    def lead(self) -> bool:
        """Lead the organization if no live process does; True while this one leads."""
        if not self.leading:
            row = self.conn.execute("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)).fetchone()
            self.leading = bool(row and row[0])
        return self.leading

    @_guarded
    def register(self, row: Process, addresses: Iterable[Address]) -> None:
        """Write this process's row and where its servers take hop mail."""
        self.conn.execute(
            "INSERT INTO processes(id, pid, host, servers, api, leader, heartbeat, settled)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET pid=excluded.pid,"
            " host=excluded.host, servers=excluded.servers, api=excluded.api,"
            " leader=excluded.leader, heartbeat=excluded.heartbeat, settled=excluded.settled",
            (row.id, row.pid, row.host, ",".join(row.servers), row.api, int(row.leader),
             row.heartbeat, row.settled))
        for a in addresses:
            self.conn.execute(
                "INSERT INTO endpoints(server, process, hop_host, hop_port, smtp_host,"
                " smtp_port) VALUES (?,?,?,?,?,?) ON CONFLICT(server) DO UPDATE SET"
                " process=excluded.process, hop_host=excluded.hop_host,"
                " hop_port=excluded.hop_port, smtp_host=excluded.smtp_host,"
                " smtp_port=excluded.smtp_port", (a.server, a.process, *a.hop, *a.smtp))

    @_guarded
    def beat(self, heartbeat: float, settled: float | None) -> None:
        """This process is alive at real time ``heartbeat`` (and has run all its work due
        by simulated time ``settled``)."""
        self.conn.execute(
            "UPDATE processes SET heartbeat=?, leader=?, settled=COALESCE(?, settled)"
            " WHERE id=?", (heartbeat, int(self.leading), settled, self.process))

    @_guarded
    def live(self, since: float) -> list[Process]:
        """The processes whose last heartbeat is at or after real time ``since``."""
        return [Process(r[0], int(r[1]), r[2], tuple(filter(None, r[3].split(","))), r[4],
                        bool(r[5]), float(r[6]), float(r[7]))
                for r in self.conn.execute(
                    "SELECT id, pid, host, servers, api, leader, heartbeat, settled"
                    " FROM processes WHERE heartbeat >= ? ORDER BY id",
                    (since,))]

    @_guarded
    def addresses(self, since: float) -> dict[str, Address]:
        """Where each server of a live process takes mail."""
        return {r[0]: Address(r[0], r[1], (r[2], int(r[3])), (r[4], int(r[5])))
                for r in self.conn.execute(
                    "SELECT e.server, e.process, e.hop_host, e.hop_port, e.smtp_host,"
                    " e.smtp_port FROM endpoints e JOIN processes p ON p.id = e.process"
                    " WHERE p.heartbeat >= ?", (since,))}

    @_guarded
    def clock(self) -> ClockBase | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (CLOCK_KEY,)).fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        return ClockBase(float(doc["sim"]), float(doc["real"]), float(doc["speed"]))

    @_guarded
    def set_clock(self, base: ClockBase) -> None:
        raw = self.conn.raw
        raw.execute("BEGIN")
        try:
            # Durable, unlike the heartbeats: a clock lost in a crash would run time backwards.
            raw.execute("SET LOCAL synchronous_commit = on")
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (CLOCK_KEY, json.dumps({"sim": base.sim, "real": base.real,
                                        "speed": base.speed})))
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise

    @_guarded
    def leave(self) -> None:
        """A clean stop: the rows go, and closing the connection drops the locks."""
        try:
            self.conn.execute("DELETE FROM endpoints WHERE process=?", (self.process,))
            self.conn.execute("DELETE FROM processes WHERE id=?", (self.process,))
        finally:
            self.conn.close()

