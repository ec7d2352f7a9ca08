"""The ``postgres`` and ``postgres_url`` fixtures (tests/pg.py): a real server, durable as
in production, listening on 127.0.0.1 only, one fresh empty database per call."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import psycopg
import pytest

from tests.pg import PostgresServer

pytestmark = pytest.mark.tools

USER_TABLES = """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname NOT LIKE 'pg_toast%'"""


def show(url: str, setting: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def test_durability_is_postgresql_default(postgres_url: str) -> None:
    # What "committed before 250" rests on.
    assert show(postgres_url, "fsync") == "on"
    assert show(postgres_url, "synchronous_commit") == "on"
    assert show(postgres_url, "max_connections") == "200"


def test_each_new_database_is_distinct_and_empty(postgres: PostgresServer) -> None:
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    for url in (first, second):
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT current_database(), current_user").fetchone()
            assert row == (url.rsplit("/", 1)[1], "postgres")
            assert connection.execute(USER_TABLES).fetchone() == (0,)
    # A table made in one is not in the other.
    with psycopg.connect(first) as connection:
        connection.execute("CREATE TABLE t (x int)")
        connection.execute("INSERT INTO t VALUES (1)")
    with psycopg.connect(second) as connection:
        assert connection.execute(USER_TABLES).fetchone() == (0,)
    with psycopg.connect(first) as connection:
        assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]


# No such address on this machine (no IPv6): nothing can listen there either.
NO_ADDRESS = {errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EAFNOSUPPORT}


def refused(family: socket.AddressFamily, host: str, port: int) -> bool:
    """Whether nothing takes a TCP connection to (host, port)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect((host, port))
    except ConnectionRefusedError:
        return True
    except OSError as error:
        if error.errno in NO_ADDRESS:
            return True
        raise
    return False


def test_the_server_listens_on_127_0_0_1_only(postgres: PostgresServer,
                                               postgres_url: str) -> None:
    assert postgres.port is not None and postgres.directory is not None
    assert show(postgres_url, "listen_addresses") == "127.0.0.1"
    with psycopg.connect(postgres_url) as connection:
        row = connection.execute("SELECT host(inet_server_addr()), inet_server_port()")
        assert row.fetchone() == ("127.0.0.1", postgres.port)
    # The rest of the loopback network and IPv6's loopback: nobody there.
    assert refused(socket.AF_INET, "127.0.0.2", postgres.port)
    assert refused(socket.AF_INET6, "::1", postgres.port)
    # Its unix socket is in its own directory, not /var/run/postgresql.
    sockets = Path(show(postgres_url, "unix_socket_directories"))
    assert sockets == postgres.socket_dir and sockets.is_relative_to(postgres.directory)
    assert (sockets / f".s.PGSQL.{postgres.port}").is_socket()


def test_stop_ends_the_server_and_removes_its_files(postgres: PostgresServer) -> None:
    # ``postgres`` only to skip (or fail) where no server can run; this test starts its own.
    server = PostgresServer()
    with server:
        assert server.port is not None and server.directory is not None
        port, directory = server.port, server.directory
        with psycopg.connect(server.new_database()) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    assert not directory.exists()
    assert refused(socket.AF_INET, "127.0.0.1", port)
    with pytest.raises(RuntimeError, match="not started"):
        server.url()
