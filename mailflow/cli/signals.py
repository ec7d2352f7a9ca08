"""Stopping a command that keeps a lab running: Ctrl-C or SIGTERM in, an event set out.

Imported only by the functions that run a lab (``run``, ``lab run --keep``), since it
imports asyncio.
"""

from __future__ import annotations

import asyncio
import signal


def stop_event() -> asyncio.Event:
    """An event the first SIGINT or SIGTERM to this process sets (instead of raising
    KeyboardInterrupt), so that the command stops its lab in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
