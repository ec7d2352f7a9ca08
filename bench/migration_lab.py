"""The lab process of the migration benchmark (issue 22): a generated organization, served.

Usage: python -m bench.migration_lab --servers N --mailboxes M --sites S [--items I] --data DIR

In: the size of the organization (``bench.orgs``) and a data directory. Out: a lab running
in this process as ``mailflow run`` runs one (``mailflow.runtime.lab.Lab``: every SMTP
endpoint and the API on a free port of 127.0.0.1, the clock stopped, ``speed`` 0, for the
benchmark to advance over the API), ``<data>/lab.json`` once everything listens, and one
JSON line on stdout with the seconds its parts took (imports, building the scenario,
``Lab.start``: seeding the store and opening the endpoints). SIGTERM or SIGINT stops it.

``mailflow run`` cannot serve it: the scenario format caps a lab at 50 servers
(``bench.orgs`` says why the organization is built directly).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402  (imports timed from T0)
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.orgs import organization  # noqa: E402
from mailflow.cli.signals import stop_event  # noqa: E402
from mailflow.runtime.lab import Lab  # noqa: E402


async def serve(args: argparse.Namespace) -> int:
    """Build, start, report, wait for a signal, stop; returns the exit status."""
    imported = time.perf_counter()
    scenario = organization(args.servers, args.mailboxes, args.sites, args.items)
    built = time.perf_counter()
    lab = Lab(scenario, Path(args.data), speed=0.0, http=("127.0.0.1", 0),
              smtp_port_override=0)
    stop = stop_event()
    await lab.start()
    started = time.perf_counter()
    print(json.dumps({"import_s": imported - T0, "scenario_s": built - imported,
                      "lab_start_s": started - built, "endpoints": len(lab.endpoints)}),
          flush=True)
    await stop.wait()
    await lab.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, required=True)
    parser.add_argument("--mailboxes", type=int, required=True)
    parser.add_argument("--sites", type=int, required=True)
    parser.add_argument("--items", type=int, default=0)
    parser.add_argument("--data", required=True)
    args = parser.parse_args(argv)
    os.umask(0o077)  # as mailflow run: the lab's files are its user's alone
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
