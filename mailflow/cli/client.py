"""How the CLI reaches a running lab and prints what it answers.

In: the command's ``--data`` / ``--api`` options. Out: JSON from the lab's API
(``Client.call``), and the tables, fields and times the commands print.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mailflow.runtime.datadir import LAB_FILE, DataDirError, lab_running, read_token

DEFAULT_DATA = "mailflow-data"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class CliError(Exception):
    """A problem to print in one line, exiting with ``status``: 2 by default, 1 when a mail
    server refused what a command sent it over SMTP."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def parse_duration(text: str) -> float:
    match = DURATION.match(text.strip())
    if not match:
        raise CliError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2)]


# -- finding and calling the lab -----------------------------------------------------------


class Client:
    """The API of the lab ``--api`` (or ``MAILFLOW_API``) names, or of the lab running on
    ``--data``; its token from ``MAILFLOW_TOKEN`` or the data directory, sent with every
    request (a lab may want it for reads too). A data directory this user cannot read
    is a CliError of one line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.data = Path(args.data)
        self.api = args.api or os.environ.get("MAILFLOW_API")
        try:
            if not self.api:
                self.api = self._running_api()
            self.token = os.environ.get("MAILFLOW_TOKEN") or self._token_file()
        except PermissionError as exc:
            raise CliError(f"cannot read {exc.filename or self.data}: permission denied"
                           " (does the lab belong to another user?)") from None

    def _running_api(self) -> str:
        if not lab_running(self.data):
            raise CliError(
                f"no running lab in {self.data} (start one with 'mailflow run',"
                " or pass --data DIR / --api URL)"
            )
        try:
            api: str = json.loads((self.data / LAB_FILE).read_text())["api"]
        except FileNotFoundError:
            raise CliError(f"the lab in {self.data} is still starting; try again") from None
        return api

    def _token_file(self) -> str | None:
        try:
            return read_token(self.data)
        except FileNotFoundError:
            return None
        except DataDirError as exc:
            raise CliError(str(exc)) from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = 60.0) -> Any:
        request = urllib.request.Request(f"{self.api}{path}", method=method)
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]
            except (ValueError, KeyError):
                message = exc.reason
            raise CliError(f"{exc.code}: {message}") from None
        except OSError as exc:
            raise CliError(f"cannot reach the lab at {self.api}: {exc}") from None
        return json.loads(payload) if kind.startswith("application/json") else payload.decode()


# -- output --------------------------------------------------------------------------------


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str("-" if r.get(c) is None else r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def show(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2) if args.json else text)


def fields(doc: dict[str, Any], keys: list[str]) -> str:
    width = max(len(k) for k in keys)
    return "\n".join(f"{k.ljust(width)}  {doc.get(k)}" for k in keys)


def quoted(value: str | None, name: str) -> str:
    """A required path segment, URL-quoted."""
    if not value:
        raise CliError(f"this command needs {name}")
    return urllib.parse.quote(value, safe="@")
