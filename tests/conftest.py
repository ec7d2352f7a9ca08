"""Real labs for tests: every server on port 0, a temporary data directory, a manual clock.

A test says which lab it needs with a marker, read by the ``lab`` and ``lab_factory`` fixtures
(as aiosmtpd's conftest reads ``controller_data``):

    @pytest.mark.lab(scenario="exchange-2010", defaults={"max_message_size": 2048})
    async def test_x(lab: Lab) -> None: ...

``lab`` is one started lab, stopped after the test. ``lab_factory`` starts more labs (or the
same data directory again, for crash and restart tests), each with the marker's options and
the keyword overrides of its call, and stops after the test every lab it started that the
test left running. Hypothesis state machines, which run their own event loop, build their
labs with :func:`build_lab`. ``lab_process`` is the default lab as a user runs it, `mailflow
run` in its own process (tests.process), for the CLI and crash tests.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from stores import db
from stores.topology import Scenario
from tests import pg
from tests.process import LabProcess


def missing_tool(message: str) -> NoReturn:
    """Skip, or fail when CI says tools are required."""
    if os.environ.get("MAILFLOW_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{message} and MAILFLOW_REQUIRE_TOOLS=1")
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The path of an external tool; skip without it, or fail when CI says tools are required."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        missing_tool(f"{name} is not installed")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PostgresServer]:
    """A real PostgreSQL server for the session (for each xdist worker: its own server, on
    its own port and directory), stopped and removed at the end."""
    reason = pg.unavailable_reason()
    if reason is not None:
        missing_tool(reason)
    yield pg.shared_server()


@pytest.fixture
def postgres_url(postgres: pg.PostgresServer) -> str:
    """The URL of a new empty database of the session's server, for this test alone."""
    return postgres.new_database()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On a PostgreSQL run of the lab tests, the tests that open the SQLite file itself (its
    modes, an older schema written by hand) have nothing to test."""
    if os.environ.get("MAILFLOW_TEST_STORE") != "postgresql":
        return
    skip = pytest.mark.skip(reason="opens the lab's SQLite file; the labs are on PostgreSQL")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


# The two backends the store-level tests run on.
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="module", params=BACKENDS)
def blank_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """A factory of empty, migrated store connections on each backend in turn, for the
    query modules' tests: SQLite in memory, or one PostgreSQL database of the module's,
    emptied at each call (Hypothesis calls it once per example)."""
    if request.param == "sqlite":
        def sqlite_conn() -> sqlite3.Connection:
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.row_factory = sqlite3.Row  # as the lab's connections read
            db.migrate(conn)
            return conn

        yield sqlite_conn
        return
    from stores import pg as pg_store

    server: pg.PostgresServer = request.getfixturevalue("postgres")
    conn = pg_store.PgConn(server.new_database())
    pg_store.migrate(conn)
    tables = [r[0] for r in conn.raw.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename <> 'schema_version'")]

    def pg_conn() -> pg_store.PgConn:
        conn.raw.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        return conn

    yield pg_conn
    conn.close()


def build_lab(
    data: Path,
    scenario: str | Scenario = "mixed-2003",
    *,
    speed: float = 0,
    http: bool = True,
    smarthost: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    relay_networks: tuple[str, ...] | None = None,
) -> Lab:
    """A lab not yet started: a built-in scenario by name (or a Scenario), with some of its
    ``defaults`` and its ``relay_networks`` replaced; every port 0, the clock stopped."""
    chosen = scenarios.load(scenario) if isinstance(scenario, str) else scenario
    if defaults:
        chosen = dataclasses.replace(chosen, defaults=dataclasses.replace(chosen.defaults,
                                                                          **defaults))
    if relay_networks is not None:
        chosen = dataclasses.replace(chosen, relay_networks=relay_networks)
    return Lab(chosen, data, speed=speed, http=("127.0.0.1", 0) if http else None,
               smtp_port_override=0, smarthost=smarthost, store=pg.lab_store(data))


class LabFactory:
    """Starts labs under the test's tmp_path with the options of its ``lab`` marker."""

    def __init__(self, tmp_path: Path, options: Mapping[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.options = dict(options)
        self.running: list[Lab] = []

    def build(self, data: str = "data", **overrides: Any) -> Lab:
        """A lab on ``tmp_path / data``, not started: for a test that starts it itself."""
        return build_lab(self.tmp_path / data, **{**self.options, **overrides})

    async def start(self, data: str = "data", **overrides: Any) -> Lab:
        """A started lab on ``tmp_path / data``: a second call with the same ``data`` after
        :meth:`stop` restarts on what the first one left."""
        lab = self.build(data, **overrides)
        await lab.start()
        self.running.append(lab)
        return lab

    async def stop(self, lab: Lab) -> None:
        self.running.remove(lab)
        await lab.stop()

    async def stop_all(self) -> None:
        while self.running:
            await self.stop(self.running[-1])


@pytest.fixture
async def lab_factory(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[LabFactory]:
    marker = request.node.get_closest_marker("lab")
    if marker is not None and marker.args:
        raise TypeError("@pytest.mark.lab takes keyword arguments only")
    factory = LabFactory(tmp_path, marker.kwargs if marker is not None else {})
    yield factory
    await factory.stop_all()


@pytest.fixture
async def lab(lab_factory: LabFactory) -> Lab:
    return await lab_factory.start()


@pytest.fixture
def lab_process(tmp_path: Path) -> Iterator[LabProcess]:
    """`mailflow run` of the default lab, every port picked by the system. A test may kill
    and restart it; if it is still running after the test, SIGTERM must end it cleanly."""
    process = LabProcess(tmp_path)
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        code, out, err = process.stop()
        assert code == 0, err
        assert "running" in out and "stopped" in out
        assert not (process.data / "lab.json").exists()


# An application's own suite, run by tests/test_plugin.py in a pytest of its own.
collect_ignore = ["plugin_example"]
