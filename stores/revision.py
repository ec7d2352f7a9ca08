"""A revision of what an operator sees, cheap to read after every commit (issue 21).

In: a read connection. Out: ``revision``, a tuple that changes when a page of the web
interface could show something new: the last event (every operator action and move step
logs one), the last trace row (every step of every message writes one) and the moves'
history and progress. The lab's scheduler commits every tick even when nothing was due;
the live pages compare revisions so that such a commit redraws nothing.
"""

from __future__ import annotations

from stores.backend import Read

Revision = tuple[int, int, int, int]


def revision(conn: Read) -> Revision:
    row = conn.execute(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0)"
        " FROM trace), (SELECT COUNT(*) FROM moves), (SELECT COALESCE(SUM(LENGTH(history)"
        " + LENGTH(progress)), 0) FROM moves)").fetchone()
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
