"""An aiosmtplib load generator, for machines without Postfix's smtp-source and for
per-message latency (which smtp-source does not report).

``sessions`` connections each send messages over and over on the same connection
(as ``smtp-source -d`` does) until ``messages`` have been sent in all. The latency of
a message is the time from its MAIL command to the 250 that answers its DATA.

Usage: python bench/loadgen.py --port P [--host H] --sessions S --messages N
       [--size BYTES] [--sender A] [--rcpt A] [--timeout SECONDS]

Prints one JSON object: elapsed seconds, messages sent and refused, and latency
percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiosmtplib


def message(n: int, size: int, sender: str, rcpt: str) -> bytes:
    """A message laid out as ``smtp-source -l size`` lays its out: four header lines, then
    a body of about ``size`` bytes in lines of 78 X's (CRLF line ends throughout)."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {n}\r\n"
            f"Message-Id: <bench.{n}.{time.time_ns()}@client.example.net>\r\n\r\n")
    lines: list[str] = []
    left = size
    i = 0
    while left > 0:
        i += 1
        body = (str(i) + "X" * 77)[: max(1, left - 2)]
        lines.append(body)
        left -= len(body) + 2
    return (head + "\r\n".join(lines) + "\r\n").encode()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    remaining = args.messages
    latencies: list[float] = []
    refused = 0
    errors: list[str] = []

    async def session(k: int) -> None:
        nonlocal remaining, refused
        client = aiosmtplib.SMTP(hostname=args.host, port=args.port, start_tls=False,
                                 local_hostname="client.example.net", timeout=60)
        await client.connect()
        try:
            while remaining > 0:
                remaining -= 1
                n = args.messages - remaining
                data = message(n, args.size, args.sender, args.rcpt)
                t0 = time.perf_counter()
                try:
                    await client.sendmail(args.sender, [args.rcpt], data)
                except aiosmtplib.SMTPException as exc:
                    refused += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    if not client.is_connected:
                        await client.connect()
                    continue
                latencies.append(time.perf_counter() - t0)
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()

    t0 = time.perf_counter()
    async with asyncio.timeout(args.timeout):
        await asyncio.gather(*(session(k) for k in range(min(args.sessions, args.messages))))
    elapsed = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "elapsed": elapsed,
        "sent": len(latencies),
        "refused": refused,
        "errors": errors,
        "rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "max": max(ms, default=None),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--sender", default="bench@example.net")
    parser.add_argument("--rcpt", default="alice@contoso.test")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
