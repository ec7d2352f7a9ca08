"""SQL text the query modules of ``stores`` share.

In: the values an ``IN (...)`` list binds. Out: its placeholders (``marks``), written
once instead of in every query that binds a list.
"""

from __future__ import annotations

from collections.abc import Sized


def marks(values: Sized) -> str:
    """The placeholders of an ``IN (...)`` list of ``values``: ``?,?,?``."""
    return ",".join("?" * len(values))
