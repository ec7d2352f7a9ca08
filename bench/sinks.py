"""Reference SMTP servers for the benchmark, each run as its own process.

``bare``: aiosmtpd answering 250 to every DATA and storing nothing - the ceiling of
the lab's SMTP stack (aiosmtpd on asyncio).

``sqlite``: aiosmtpd storing each message with one SQLite transaction and one commit
per message (WAL, synchronous=FULL, as durable as the lab's store), done on the event
loop before the 250 - the simplest durable server one could write on the same stack.
Its SQLite file is this reference server's own, not the lab's store: the plain INSERT
and COMMIT are what it measures, so its SQL stays here and not in stores/.

Usage: python bench/sinks.py {bare,sqlite} --ready FILE [--host H] [--port P] [--db PATH]

The chosen port is written to FILE once the server listens. SIGTERM or SIGINT stops
it; the number of messages it took is printed on stdout as JSON at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class BareHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 2.0.0 OK"


class SqliteHandler:
    """One INSERT and one COMMIT (fsynced) per message, before the 250."""

    def __init__(self, path: Path) -> None:
        self.count = 0
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, mail_from TEXT,"
            " rcpts TEXT, peer TEXT, data BLOB NOT NULL)"
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(
                "INSERT INTO messages(mail_from, rcpts, peer, data) VALUES (?,?,?,?)",
                (envelope.mail_from, json.dumps(envelope.rcpt_tos), str(session.peer),
                 envelope.original_content),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.count += 1
        return f"250 2.0.0 OK id={cur.lastrowid}"


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    handler: Any = BareHandler() if args.mode == "bare" else SqliteHandler(Path(args.db))
    loop = asyncio.get_running_loop()
    # hostname given: aiosmtpd would otherwise call socket.getfqdn() for every session.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench.test", enable_SMTPUTF8=True),
        args.host, args.port, backlog=1024,
    )
    port = server.sockets[0].getsockname()[1]
    tmp = Path(args.ready + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, args.ready)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    return {"mode": args.mode, "messages": handler.count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["bare", "sqlite"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready", required=True, help="file the listening port is written to")
    parser.add_argument("--db", help="SQLite file (mode sqlite)")
    args = parser.parse_args(argv)
    if args.mode == "sqlite" and not args.db:
        parser.error("mode sqlite needs --db")
    result = asyncio.run(serve(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
