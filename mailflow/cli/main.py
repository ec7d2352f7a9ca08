"""The ``mailflow`` command: arguments in, a running lab or the API's answers printed out.

``run`` starts a lab in this process. Every other command finds the running
lab through its data directory (``--data``, ``MAILFLOW_DATA``, default
``./mailflow-data``: the lab writes its API address to ``lab.json`` and its
token to ``api-token`` there) or an explicit ``--api URL``, and prints a
table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mailflow.cli import labs as lab_cli
from mailflow.cli import moves as move_cli
from mailflow.cli import queues as queue_cli
from mailflow.cli.client import (
    DEFAULT_DATA,
    Client,
    CliError,
    age,
    fields,
    parse_duration,
    quoted,
    show,
    table,
    when,
)
from mailflow.errors import LabError

# Only what the HTTP-client commands need is imported here (~0.1 s). The lab (`run`), asyncio
# and aiosmtplib (`send`) and the scripted labs (`lab`, in lab_cli) would add ~0.4 s to every
# command, `mailflow queues` and `--help` included, so the functions that run those commands
# import them (docs/benchmarks.md, hotspot 8).
if TYPE_CHECKING:
    from mailflow.runtime.lab import Lab


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from mailflow import scenarios
    from mailflow.runtime.lab import Lab

    data = Path(args.data)
    stored = _stored_scenario(data)
    try:
        if args.scenario:
            scenario = scenarios.load(args.scenario)
        elif stored is not None:
            scenario = scenarios.parse(stored, f"{data}/mailflow.db")
        else:
            scenario = scenarios.load("mixed-2003")
    except scenarios.ScenarioError as exc:
        raise CliError(str(exc)) from None
    http_host, _, http_port = args.http.rpartition(":")
    if not http_host or not http_port.isdigit():
        raise CliError(f"--http wants HOST:PORT, not {args.http!r}")
    try:
        lab = Lab(scenario, data, speed=args.speed, host=args.listen,
                  http=(http_host, int(http_port)), smarthost=args.smarthost)
    except ValueError as exc:
        raise CliError(f"--smarthost wants HOST:PORT: {exc}") from None
    return asyncio.run(_run(lab))


def _stored_scenario(data: Path) -> str | None:
    from stores import db

    path = data / "mailflow.db"
    if not path.exists():
        return None
    conn = db.connect(path)
    try:
        db.migrate(conn)
        return db.get_meta(conn, "scenario")
    finally:
        conn.close()


async def _run(lab: Lab) -> int:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await lab.start()
    except (LabError, OSError) as exc:
        raise CliError(f"cannot start the lab: {exc}") from None
    print(f"mailflow lab '{lab.scenario.name}' running (data {lab.data_dir},"
          f" clock x{lab.clock.speed:g})")
    for name, endpoint in lab.endpoints.items():
        server = lab.scenario.server(name)
        print(f"  {name:<12} {server.version:<5} {server.site:<10}"
              f" smtp://{endpoint.host}:{endpoint.port}")
    if lab.scenario.smarthost:
        print(f"  outbound smarthost: smtp://{lab.scenario.smarthost}")
    print(f"  API and metrics: {lab.http_url}  (token in {lab.data_dir / 'api-token'})")
    if lab.host not in ("127.0.0.1", "localhost", "::1"):
        ports = ", ".join(str(e.port) for e in lab.endpoints.values())
        print(f"WARNING: SMTP ports {ports} listen on {lab.host}, beyond this machine",
              file=sys.stderr)
    print("Ctrl-C stops the lab.", flush=True)
    await stop.wait()
    await lab.stop()
    print("mailflow lab stopped.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", "/api/v1/status")
    lines = [f"scenario {doc['scenario']}   clock {when(doc['clock'])}   API {doc['api']}", ""]
    lines += [f"  {name:<12} smtp://{h}:{p}" for name, (h, p) in doc["endpoints"].items()]
    lines += ["", "in transit: " + (", ".join(
        f"{r['mailbox']} ({r['server']})" for r in doc["in_transit"]) or "none")]
    lines += [f"queued: {doc['queued']}"] + [f"  {k}: {v}" for k, v in doc["queues"].items()]
    lines += ["moves: " + (", ".join(f"{k} {v}" for k, v in doc["moves"].items()) or "none")]
    show(args, doc, "\n".join(lines))
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    rows = Client(args).call("GET", "/api/v1/queues")
    view = [
        {**r, "next_retry": when(r["next_retry_time"]) if r["next_retry_time"] else None,
         "oldest": age(r["oldest_message_age_seconds"]) if r["message_count"] else None}
        for r in rows
    ]
    show(args, rows, table(view, ["identity", "message_count", "status", "next_retry",
                                  "oldest", "last_error"]))
    return 0


def cmd_mailbox(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/mailboxes")
        show(args, rows, table(rows, ["address", "server", "in_transit", "message_count"]))
        return 0
    address = quoted(args.address, "ADDRESS")
    if args.action == "show":
        doc = client.call("GET", f"/api/v1/mailboxes/{address}")
        show(args, doc, fields(doc, ["address", "display_name", "server", "store", "in_transit",
                                     "message_count", "home_mdb", "home_mta", "home_server_name",
                                     "legacy_exchange_dn", "proxy_addresses"]))
    else:
        rows = client.call("GET", f"/api/v1/mailboxes/{address}/messages")
        view = [{**r, "delivered": when(r["delivered_at"])} for r in rows]
        show(args, rows, table(view, ["id", "folder", "delivered", "mail_from", "subject"]))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", f"/api/v1/messages/{quoted(args.message, 'MESSAGE-ID')}")
    view = [{**t, "simulated": when(t["sim_time"]), "real": when(t["real_time"])}
            for t in doc["trace"]]
    head = f"message {doc['id']} {doc['message_id']} from <{doc['mail_from']}>"
    show(args, doc, head + "\n" + table(view, ["simulated", "real", "server", "rcpt", "stage",
                                               "detail"]))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", "/api/v1/audit")
    queued = "\n".join(f"  {k}: {v}" for k, v in sorted(doc["queued"].items()))
    text = (f"accepted {doc['accepted']}, delivered {doc['delivered']},"
            f" relayed {doc['relayed']}, NDR {doc['ndr']},"
            f" deleted {doc['deleted']}, queued {sum(doc['queued'].values())}\n{queued}\n")
    text += "audit clean: every accepted recipient is in exactly one place" if doc["clean"] \
        else "AUDIT FAILED:\n" + "\n".join(f"  {p}" for p in doc["problems"])
    show(args, doc, text.replace("\n\n", "\n"))
    return 0 if doc["clean"] else 1


def cmd_clock(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.advance:
        doc = client.call("POST", "/api/v1/clock/advance",
                          {"seconds": parse_duration(args.advance)})
    else:
        doc = client.call("GET", "/api/v1/clock")
    show(args, doc, f"{when(doc['now'])} (x{doc['speed']:g})")
    return 0


def cmd_connector(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/connectors")
        show(args, rows, table(rows, ["id", "name", "type", "site_a", "site_b", "cost"]))
    elif args.action == "add":
        body = {"type": args.type, "site_a": args.site_a, "site_b": args.site_b,
                "cost": args.cost, "name": args.name or ""}
        doc = client.call("POST", "/api/v1/connectors", body)
        show(args, doc, f"connector {doc['id']} {doc['name']!r} added")
    else:
        doc = client.call("DELETE", f"/api/v1/connectors/{quoted(args.id, 'ID')}")
        show(args, doc, f"connector {doc['removed']} removed")
    return 0


def cmd_rpc(args: argparse.Namespace) -> int:
    body = {"a": args.a, "b": args.b, "allowed": args.action == "allow"}
    doc = Client(args).call("POST", "/api/v1/rpc", body)
    word = "allowed" if doc["allowed"] else "blocked"
    show(args, doc, f"RPC between {doc['a']} and {doc['b']} {word}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    path = f"/api/v1/services/{quoted(args.server, 'SERVER')}/{args.service}/{args.action}"
    doc = Client(args).call("POST", path)
    show(args, doc, f"{doc['service']} on {doc['server']}:"
                    f" {'running' if doc['running'] else 'stopped'}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    client = Client(args)
    after = 0
    while True:
        rows = client.call("GET", f"/api/v1/events?after={after}")
        if args.json:
            for row in rows:
                print(json.dumps(row), flush=True)
        else:
            for row in rows:
                print(f"{when(row['sim_time'])}  {row['server']:<10} {row['source']:<14}"
                      f" {row['event_id']:>5} {row['level']:<11} {row['text']}", flush=True)
        after = rows[-1]["id"] if rows else after
        if not args.follow:
            return 0
        time.sleep(1)  # --follow polls the lab once a second


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    client = Client(args)
    endpoints = client.call("GET", "/api/v1/status")["endpoints"]
    server = args.server or next(iter(endpoints))
    if server not in endpoints:
        raise CliError(f"no server {server!r}; servers: {', '.join(endpoints)}")
    host, port = endpoints[server]
    replies = asyncio.run(_send(host, port, args))
    for reply in replies:
        print(f"{server}: {reply}")
    return 0


def make_msgid_header() -> str:
    return f"Message-ID: {email.utils.make_msgid(domain='mailflow.test')}\r\n"


async def _send(host: str, port: int, args: argparse.Namespace) -> list[str]:
    import aiosmtplib

    replies = []
    try:
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                                   local_hostname="mailflow-send") as smtp:
            for n in range(1, args.count + 1):
                body = (f"From: <{args.sender}>\r\nTo: <{args.to}>\r\n{make_msgid_header()}"
                        f"Subject: {args.subject} {n}/{args.count}\r\n"
                        f"Date: {dt.datetime.now(dt.UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
                        f"\r\n\r\nTest message {n} sent by mailflow send.\r\n")
                _, reply = await smtp.sendmail(args.sender, [args.to], body.encode())
                replies.append(reply)
    except aiosmtplib.SMTPException as exc:
        raise CliError(str(exc), status=1) from None
    return replies


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("the clock runs at 0 (stopped) or faster")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=os.environ.get("MAILFLOW_DATA", DEFAULT_DATA),
                        help="the lab's data directory (default $MAILFLOW_DATA or ./mailflow-data)")
    common.add_argument("--api", help="talk to the lab at this URL instead")
    common.add_argument("--json", action="store_true", help="print JSON")
    parser = argparse.ArgumentParser(prog="mailflow", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="start a lab")
    run.add_argument("--scenario", help="built-in name or TOML file (default mixed-2003)")
    run.add_argument("--speed", type=_speed, default=1.0,
                     help="simulated seconds per real second; 0 stops the clock (default 1)")
    run.add_argument("--http", default="127.0.0.1:8025", help="API and /metrics HOST:PORT")
    run.add_argument("--listen", default="127.0.0.1", help="address the SMTP endpoints bind")
    run.add_argument("--smarthost", metavar="HOST:PORT",
                     help="relay mail for other domains and DSNs to external senders here")
    run.set_defaults(func=cmd_run)

    for name, func, text in (("status", cmd_status, "servers, in-transit mailboxes, queues"),
                             ("queues", cmd_queues, "every queue, as Queue Viewer shows it"),
                             ("audit", cmd_audit, "prove no accepted recipient was lost")):
        sub.add_parser(name, parents=[common], help=text).set_defaults(func=func)

    move_cli.add_parser(sub, common)
    queue_cli.add_parser(sub, common)
    lab_cli.add_parser(sub)

    mailbox = sub.add_parser("mailbox", parents=[common], help="mailboxes and their messages")
    mailbox.add_argument("action", choices=["list", "show", "messages"])
    mailbox.add_argument("address", nargs="?")
    mailbox.set_defaults(func=cmd_mailbox)

    trace = sub.add_parser("trace", parents=[common], help="every hop of one message")
    trace.add_argument("message", metavar="MESSAGE-ID",
                       help="the queue id the 250 reply named, or the Message-ID header")
    trace.set_defaults(func=cmd_trace)

    clock = sub.add_parser("clock", parents=[common], help="show or advance the lab clock")
    clock.add_argument("--advance", metavar="DURATION", help="e.g. 30m: run what falls due")
    clock.set_defaults(func=cmd_clock)

    connector = sub.add_parser("connector", help="connectors between sites").add_subparsers(
        dest="action", required=True)
    connector.add_parser("list", parents=[common]).set_defaults(func=cmd_connector)
    add = connector.add_parser("add", parents=[common], help="add a connector")
    add.add_argument("site_a", metavar="SITE-A")
    add.add_argument("site_b", metavar="SITE-B")
    add.add_argument("--type", required=True, choices=["site", "x400", "smtp"])
    add.add_argument("--cost", type=int, default=1)
    add.add_argument("--name", help="default: '<SITE-A>-<SITE-B> <Type>'")
    add.set_defaults(func=cmd_connector)
    remove = connector.add_parser("remove", parents=[common], help="remove a connector")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(func=cmd_connector)

    rpc = sub.add_parser("rpc", parents=[common], help="allow or block RPC between servers")
    rpc.add_argument("action", choices=["allow", "block"])
    rpc.add_argument("a", metavar="SERVER-A")
    rpc.add_argument("b", metavar="SERVER-B")
    rpc.set_defaults(func=cmd_rpc)

    service = sub.add_parser("service", parents=[common], help="stop or start a server's MTA")
    service.add_argument("action", choices=["stop", "start"])
    service.add_argument("server", metavar="SERVER")
    service.add_argument("service", choices=["mta"])
    service.set_defaults(func=cmd_service)

    events = sub.add_parser("events", parents=[common], help="the emulated event log")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=cmd_events)

    send = sub.add_parser("send", parents=[common], help="send test mail over SMTP")
    send.add_argument("--to", required=True)
    send.add_argument("--server", help="endpoint to send to (default: the first server)")
    send.add_argument("--count", type=int, default=1)
    send.add_argument("--from", dest="sender", default="tester@example.net")
    send.add_argument("--subject", default="mailflow test")
    send.set_defaults(func=cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CliError as exc:
        print(f"mailflow {args.command}: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
