"""Windows services of the emulated servers that a lab can stop and start (today: the MTA).

In: start/stop requests. Out: whether a service runs; every service runs unless stopped.
"""

from __future__ import annotations

from stores.backend import Conn

# "mrs": the Mailbox Replication Service of a 2010 Client Access server (issue 18).
SERVICES = ("mta", "mrs")


def running(conn: Conn, server: str, service: str) -> bool:
    row = conn.execute(
        "SELECT running FROM services WHERE server=? AND service=?", (server, service)
    ).fetchone()
    return row is None or bool(row[0])


def set_running(conn: Conn, server: str, service: str, flag: bool) -> None:
    conn.execute(
        "INSERT INTO services(server, service, running) VALUES (?,?,?)"
        " ON CONFLICT(server, service) DO UPDATE SET running=excluded.running",
        (server, service, int(flag)),
    )
