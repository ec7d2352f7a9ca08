"""The ``mailflow`` command: one module per command group.

In: the command line. Out: a lab run in this process (``run``, ``lab run``) or
HTTP requests to a running lab's API, printed as tables or JSON.
"""

from mailflow.cli.main import main

__all__ = ["main"]
