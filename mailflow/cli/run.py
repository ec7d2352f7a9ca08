"""``mailflow run``: start a lab in this process and keep it running until Ctrl-C.

In: ``--scenario``, ``--speed``, ``--http`` (``HOST:PORT``, ``[v6]:PORT``), ``--http-
name``, ``--token-for-reads``, ``--listen``, ``--smarthost``, the data directory, and the
store (``--store``) with the servers this process runs (``--servers``, for a lab in
several processes on PostgreSQL). Out: the running lab (its endpoints, API and metrics), a
few lines saying where it listens (and a warning on stderr for anything that listens
beyond this machine), and exit status 0 once stopped. Every file the lab makes is private
to its user (umask 077)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailflow.cli.client import CliError
from mailflow.errors import LabError

# The lab, asyncio and the scenarios (~0.4 s) are imported by the functions that run it, not
# here: `mailflow` builds this command's parser for every command (docs/benchmarks.md,
# hotspot 8).
if TYPE_CHECKING:
    from mailflow.runtime.lab import Lab
    from stores.topology import Scenario


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", parents=[common], help="start a lab")
    run.add_argument("--scenario", help="built-in name or TOML file (default mixed-2003)")
    run.add_argument("--speed", type=_speed, default=1.0,
                     help="simulated seconds per real second; 0 stops the clock (default 1)")
    run.add_argument("--http", default="127.0.0.1:8025",
                     help="API and /metrics HOST:PORT ([::1]:PORT for IPv6)")
    run.add_argument("--http-name", action="append", default=[], metavar="NAME",
                     help="a host name the API answers to besides IP addresses and localhost"
                     " (repeatable; other Host headers get 421, against DNS rebinding)")
    run.add_argument("--token-for-reads", action="store_true",
                     help="require the API token for reads too (all but /healthz)")
    run.add_argument("--listen", default="127.0.0.1", help="address the SMTP endpoints bind")
    run.add_argument("--store", default=os.environ.get("MAILFLOW_STORE"),
                     metavar="postgresql://...",
                     help="keep the lab's state in this PostgreSQL database, shared by every"
                          " process of the lab (default: MAILFLOW_STORE, else SQLite in"
                          " --data)")
    run.add_argument("--servers", metavar="A,B",
                     help="run only these servers' endpoints and work here; the lab's other"
                          " processes, on the same PostgreSQL --store, run the rest"
                          " (docs/scale-out.md)")
    run.add_argument("--smarthost", metavar="HOST:PORT",
                     help="relay mail for other domains and DSNs to external senders here")
    run.set_defaults(func=cmd_run)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("the clock runs at 0 (stopped) or faster")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from mailflow import scenarios
    from mailflow.runtime.lab import Lab
    from stores import backends

    data = Path(args.data)
    where = backends.location(data, args.store)
    stored = _stored_scenario(where)
    try:
        if args.scenario:
            scenario = scenarios.load(args.scenario)
        elif stored is not None:
            scenario = scenarios.parse(stored, backends.describe(where))
        else:
            scenario = scenarios.load("mixed-2003")
    except scenarios.ScenarioError as exc:
        raise CliError(str(exc)) from None
    http = parse_http(args.http)
    servers = _servers(scenario, args.servers, where)
    try:
        lab = Lab(scenario, data, speed=args.speed, host=args.listen, http=http,
                  smarthost=args.smarthost, token_for_reads=args.token_for_reads,
                  http_names=tuple(args.http_name), store=args.store, servers=servers)
    except ValueError as exc:
        raise CliError(f"--smarthost wants HOST:PORT: {exc}") from None
    # The lab's files (store, WAL, lab.json, token) are its user's alone.
    os.umask(0o077)
    return asyncio.run(_run(lab))


def _servers(scenario: Scenario, text: str | None, where: Path | str
             ) -> tuple[str, ...] | None:
    """``--servers``: names of the scenario's servers, for a lab on PostgreSQL only."""
    from stores import backends

    if text is None:
        return None
    if not backends.is_shared(where):
        raise CliError("--servers needs the lab on PostgreSQL (--store postgresql://...):"
                       " a SQLite store belongs to one process")
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {s.name.upper(): s.name for s in scenario.servers}
    unknown = [name for name in names if name.upper() not in known]
    if unknown or not names:
        raise CliError(f"--servers: no server {', '.join(unknown) or '(none given)'} in"
                       f" scenario {scenario.name!r} (it has {', '.join(known.values())})")
    return tuple(dict.fromkeys(known[name.upper()] for name in names))


def parse_http(text: str) -> tuple[str, int]:
    """``--http``: ``HOST:PORT`` or ``[V6]:PORT`` as (host, port); CliError otherwise."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs its brackets: where would the port start?
    if not host or not port.isdigit() or int(port) > 65535:
        raise CliError(f"--http wants HOST:PORT or [IPv6]:PORT, not {text!r}")
    return host, int(port)


def _loopback(host: str) -> bool:
    """Whether ``host`` is reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stored_scenario(where: Path | str) -> str | None:
    from stores import backends
    from stores.backend import StoreError

    try:
        return backends.stored_meta(where, "scenario")
    except (StoreError, OSError) as exc:
        raise CliError(f"cannot read {backends.describe(where)}: {exc}") from None


async def _run(lab: Lab) -> int:
    from mailflow.cli.signals import stop_event
    from stores import backends

    stop = stop_event()
    try:
        await lab.start()
    except (LabError, OSError) as exc:
        raise CliError(f"cannot start the lab: {exc}") from None
    print(f"mailflow lab '{lab.scenario.name}' running (data {lab.data_dir},"
          f" clock x{lab.clock.speed:g})")
    if lab.cluster is not None:
        print(f"  store {backends.describe(lab.store_location)}, shared: this process runs"
              f" {', '.join(lab.servers)}")
    for name, endpoint in lab.endpoints.items():
        server = lab.scenario.server(name)
        print(f"  {name:<12} {server.version:<5} {server.site:<10}"
              f" smtp://{endpoint.host}:{endpoint.port}")
    if lab.scenario.smarthost:
        print(f"  outbound smarthost: smtp://{lab.scenario.smarthost}")
    print(f"  API and metrics: {lab.http_url}  (token in {lab.data_dir / 'api-token'})")
    if not _loopback(lab.host):
        ports = ", ".join(str(e.port) for e in lab.endpoints.values())
        print(f"WARNING: SMTP ports {ports} listen on {lab.host}, beyond this machine",
              file=sys.stderr)
    if lab.http is not None and not _loopback(lab.http[0]):
        reads = ("reads need the token" if lab.token_for_reads else
                 "anyone who reaches it can read every message; --token-for-reads closes it")
        print(f"WARNING: the API at {lab.http_url} listens on {lab.http[0]}, beyond this"
              f" machine: {reads}", file=sys.stderr)
    print("Ctrl-C stops the lab.", flush=True)
    await stop.wait()
    await lab.stop()
    print("mailflow lab stopped.")
    return 0
