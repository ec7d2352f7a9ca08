"""``mailflow send``: send test mail to a lab's SMTP endpoint.

In: ``--to``, ``--server``, ``--count``, ``--from``, ``--subject``. Out: the
messages over SMTP (aiosmtplib, imported when the command runs), and each 250
reply printed; a refusal exits 1 with aiosmtplib's error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
from typing import Any

from mailflow.cli.client import Client, CliError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    send = sub.add_parser("send", parents=[common], help="send test mail over SMTP")
    send.add_argument("--to", required=True)
    send.add_argument("--server", help="endpoint to send to (default: the first server)")
    send.add_argument("--count", type=int, default=1)
    send.add_argument("--from", dest="sender", default="tester@example.net")
    send.add_argument("--subject", default="mailflow test")
    send.set_defaults(func=cmd_send)


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
