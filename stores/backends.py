"""Which backend a lab's store is: SQLite in the data directory, or PostgreSQL by URL.

In: a store location (None or a path for SQLite, a ``postgresql://`` URL for PostgreSQL),
the lab clock and the commit callback. Out: the opened ``Backend``, and the two looks a
lab takes before it opens one (the simulated time reached, a ``meta`` value).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stores import db
from stores.backend import Backend, Fact
from stores.clock import Clock

# The SQLite file of a data directory.
SQLITE_FILE = "mailflow.db"

Location = Path | str


def is_url(store: str) -> bool:
    """Whether ``store`` names a PostgreSQL database rather than a SQLite file."""
    return store.startswith(("postgresql://", "postgres://"))


def location(data_dir: Path, store: str | None) -> Location:
    """The store of a lab: ``store`` when it names a PostgreSQL database, else the data
    directory's SQLite file."""
    if store and is_url(store):
        return store
    return Path(store) if store else data_dir / SQLITE_FILE


def describe(where: Location) -> str:
    """``where`` for an error message, without a password."""
    if isinstance(where, Path):
        return str(where)
    scheme, _, rest = where.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def is_shared(where: Location) -> bool:
    """Whether several lab processes may share the store (PostgreSQL)."""
    return isinstance(where, str)


def open_store(where: Location, clock: Clock,
               on_commit: Callable[[list[Fact]], None] | None = None) -> Backend:
    if isinstance(where, Path):
        return db.Store(where, clock, on_commit)
    from stores import pg  # psycopg is loaded only by a lab that uses it

    return pg.PgStore(where, clock, on_commit)


def saved_clock(where: Location) -> float:
    if isinstance(where, Path):
        return db.saved_clock(where)
    from stores import pg

    return pg.saved_clock(where)


def stored_meta(where: Location, key: str) -> str | None:
    if isinstance(where, Path):
        return db.stored_meta(where, key)
    from stores import pg

    return pg.stored_meta(where, key)
