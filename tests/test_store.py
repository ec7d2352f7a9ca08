"""The group commit: a batch of writes commits together, and a failing write undoes only itself,
on both backends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from stores.backend import Backend, Fact
from stores.clock import Clock
from stores.db import Store, Tx
from tests.conftest import BACKENDS


def insert(key: str) -> Callable[[Tx], str]:
    def write(tx: Tx) -> str:
        tx.execute("INSERT INTO meta(key, value) VALUES (?, 'v')", (key,))
        tx.trace("M", None, "A", key)
        tx.note("accepted", server=key)
        return key
    return write


def refuse(tx: Tx) -> str:
    insert("refused")(tx)
    raise ValueError("refused")


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path
               ) -> Callable[[Callable[[list[Fact]], None]], Backend]:
    """Opens a new store of each backend: SQLite in ``tmp_path``, or a new PostgreSQL
    database."""
    if request.param == "sqlite":
        return lambda on_commit: Store(tmp_path / "store.db", Clock(speed=0), on_commit)
    from stores.pg import PgStore

    url = request.getfixturevalue("postgres_url")
    return lambda on_commit: PgStore(url, Clock(speed=0), on_commit)


async def test_a_failing_write_undoes_only_itself(
        open_store: Callable[[Callable[[list[Fact]], None]], Backend]) -> None:
    committed: list[Fact] = []
    store = open_store(committed.extend)
    try:
        # Hold the writer inside a batch of its own, so that the next three share one batch.
        inside, release = threading.Event(), threading.Event()
        held = asyncio.ensure_future(store.write(lambda tx: inside.set() or release.wait(10)))
        await asyncio.to_thread(inside.wait, 10)
        writes = [asyncio.ensure_future(store.write(fn))
                  for fn in (insert("first"), refuse, insert("second"))]
        await asyncio.sleep(0)  # each write is in the writer's inbox
        release.set()
        await held
        results = await asyncio.gather(*writes, return_exceptions=True)

        assert results[0] == "first" and results[2] == "second"
        assert isinstance(results[1], ValueError)
        keys = await store.read(lambda c: [r[0] for r in c.execute("SELECT key FROM meta")])
        stages = await store.read(lambda c: [r[0] for r in c.execute("SELECT stage FROM trace")])
        assert sorted(keys) == sorted(stages) == ["first", "second"]
        # The facts reached the loop before the results did.
        assert sorted(f.labels["server"] for f in committed) == ["first", "second"]
    finally:
        store.close()


async def test_text_with_a_nul_is_stored_and_found(
        open_store: Callable[[Callable[[list[Fact]], None]], Backend]) -> None:
    """A NUL in a message's subject or in a search (the API's filters) is no error on
    either backend (PostgreSQL keeps it as U+FFFD)."""
    store = open_store(lambda facts: None)
    try:
        await store.write(lambda tx: tx.execute("INSERT INTO meta(key, value) VALUES (?, ?)",
                                                ("subject\x00", "v\x00")))
        found = await store.read(lambda c: c.execute(
            "SELECT COUNT(*) FROM meta WHERE key = ?", ("subject\x00",)).fetchone()[0])
        assert found == 1
    finally:
        store.close()
