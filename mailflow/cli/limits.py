"""The range of every number the ``mailflow`` command takes, in one place.

In: the text of a numeric option (``--count``, ``--bad-items``, ``--bad-item-limit``,
``--cost``, ``--timeout``, durations such as ``--advance 30m``). Out: the number, or a
``CliError`` naming the option and its range, which ``mailflow.cli.main`` prints as one
line and exits 2. The API checks its own ranges again; these keep a typo from ever
reaching it, and say what is allowed where the user typed it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from mailflow import limits as shared
from mailflow.cli.client import CliError

# option: its range (mailflow.limits), inclusive; the API's own where the option is passed
# on to the API, so the CLI and the API refuse the same values.
RANGES: dict[str, shared.Range] = {
    "--count": shared.SEND_COUNT,
    "--bad-items": shared.BAD_ITEMS,
    "--bad-item-limit": shared.BAD_ITEM_LIMIT,
    "--cost": shared.CONNECTOR_COST,
    "--limit": shared.PAGE_LIMIT,
    "--copy-queue": shared.COPY_QUEUE,
    "--replay-queue": shared.REPLAY_QUEUE,
}
# Durations in seconds: up to ten simulated years (one clock advance's limit); the clock
# never goes back.
MAX_DURATION = int(shared.MAX_ADVANCE_SECONDS)
# How long `move complete|fail --wait` waits, in real seconds.
MAX_TIMEOUT = 3600
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Options whose value is a duration, so a negative one ("-5m") is a value, not an option.
DURATION_OPTIONS = ("--advance", "--older-than", "--timeout")


def whole(option: str) -> Callable[[str], int]:
    """An argparse ``type`` for the whole-number option ``option``, checked against RANGES."""
    low, high = int(RANGES[option].low), int(RANGES[option].high)

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise CliError(f"{option} wants a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise CliError(f"{option} must be {low}..{high}, not {text}")
        return value

    return parse


def duration(option: str, *, zero: bool = True) -> Callable[[str], float]:
    """An argparse ``type`` for a duration (90s, 30m, 2h, 1d; bare seconds) up to ten years.
    ``--advance`` refuses a negative one in its own words: the lab clock never goes back."""

    def parse(text: str) -> float:
        if text.strip().startswith("-") and DURATION.match(text.strip()[1:]):
            if option == "--advance":
                raise CliError("the lab clock never goes back (--advance wants a duration >= 0)")
            raise CliError(f"{option} must not be negative, not {text!r}")
        match = DURATION.match(text.strip())
        if not match:
            raise CliError(f"{option}: not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
        if not math.isfinite(seconds) or seconds > MAX_DURATION or (not zero and seconds == 0):
            raise CliError(f"{option} must be {'0' if zero else 'more than 0'} up to"
                           f" {MAX_DURATION // 86400}d, not {text!r}")
        return seconds

    return parse


def timeout(text: str) -> float:
    """``--timeout`` of a wait: real seconds, 1..MAX_TIMEOUT (a duration such as 2m too)."""
    seconds = duration("--timeout", zero=False)(text)
    if seconds > MAX_TIMEOUT:
        raise CliError(f"--timeout must be more than 0 up to {MAX_TIMEOUT}s, not {text!r}")
    return seconds


def join_negative(argv: list[str]) -> list[str]:
    """``--advance -5m`` as ``--advance=-5m``: argparse would take ``-5m`` for an option and
    answer "expected one argument"; joined, the duration's own check answers it."""
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in DURATION_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and DURATION.match(argv[i + 1][1:]):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined
