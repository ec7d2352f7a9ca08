"""``mailflow send``: send test mail to a lab's SMTP endpoint.

In: ``--to``, ``--server`` (any case), ``--count``, ``--from``, ``--subject``. Out: the
messages over SMTP (aiosmtplib, imported when the command runs), and each 250 reply
printed (a JSON array of {server, code, reply} with ``--json``); a refusal exits 1 with
the server's reply line, e.g. ``550 5.1.1 ... (RCPT TO nobody@contoso.test)``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import json
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client, CliError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    send = sub.add_parser("send", parents=[common], help="send test mail over SMTP")
    send.add_argument("--to", required=True)
    send.add_argument("--server", help="endpoint to send to (default: the first server)")
    send.add_argument("--count", type=limits.whole("--count"), default=1,
                      help="messages to send (1..10000)")
    send.add_argument("--from", dest="sender", default="tester@example.net")
    send.add_argument("--subject", default="mailflow test")
    send.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    client = Client(args)
    endpoints = client.call("GET", "/api/v1/status")["endpoints"]
    # Server names match in any case, as the API matches them.
    by_name = {name.lower(): name for name in endpoints}
    server = by_name.get((args.server or next(iter(endpoints))).lower())
    if server is None:
        raise CliError(f"no server {args.server!r}; servers: {', '.join(endpoints)}")
    host, port = endpoints[server]
    replies = asyncio.run(_send(host, port, args))
    if args.json:
        print(json.dumps([{"server": server, "code": code, "reply": text}
                          for code, text in replies], indent=2))
    else:
        for code, text in replies:
            print(f"{server}: {code} {text}")
    return 0


def make_msgid_header() -> str:
    return f"Message-ID: {email.utils.make_msgid(domain='mailflow.test')}\r\n"


async def _send(host: str, port: int, args: argparse.Namespace) -> list[tuple[int, str]]:
    """Send ``args.count`` messages in one session; the (code, text) of each 250."""
    import aiosmtplib

    from mailflow.refusals import refusal_line

    replies = []
    try:
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                                   local_hostname="mailflow-send") as smtp:
            for n in range(1, args.count + 1):
                body = (f"From: <{args.sender}>\r\nTo: <{args.to}>\r\n{make_msgid_header()}"
                        f"Subject: {args.subject} {n}/{args.count}\r\n"
                        f"Date: {dt.datetime.now(dt.UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
                        f"\r\n\r\nTest message {n} sent by mailflow send.\r\n")
                # sendmail raises on anything but 250 and returns the reply's text.
                _, text = await smtp.sendmail(args.sender, [args.to], body.encode())
                replies.append((250, text))
    except aiosmtplib.SMTPException as exc:
        raise CliError(refusal_line(exc), status=1) from None
    return replies
