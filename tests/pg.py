"""A throwaway PostgreSQL server for tests: a real cluster, gone after the run.

In: the PostgreSQL server binaries (``initdb``, ``pg_ctl``, ``postgres``), found by
:func:`find_bindir`. Out: :class:`PostgresServer`, a cluster in a temporary directory that
listens on 127.0.0.1 only, on a port the system picked, with ``trust`` authentication for
the superuser ``postgres``; :meth:`PostgresServer.new_database` hands out the URL of a fresh
empty database, ``postgresql://postgres@127.0.0.1:PORT/NAME``. :meth:`PostgresServer.stop`
ends the server and removes every file it wrote.

Durability is PostgreSQL's default (``fsync`` and ``synchronous_commit`` on): the stores
answer 250 only for what is committed, and the tests must see what production would.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to the
``postgres`` user, and ``initdb``/``pg_ctl`` run through ``runuser``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
# The OS user that owns the cluster when we are root (Debian's postgresql package makes it).
OS_USER = "postgres"
BINARIES = ("initdb", "pg_ctl", "postgres")
MAX_CONNECTIONS = 200
TIMEOUT = 120  # seconds for initdb or pg_ctl: a slow CI disk with fsync on, not a schedule


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def find_bindir() -> Path | None:
    """The directory of the server binaries: the highest version under /usr/lib/postgresql
    (Debian keeps them off PATH), else ``pg_config --bindir``, else ``initdb`` on PATH."""
    candidates: list[Path] = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        # Numeric order: 9.6 < 10 < 15.
        versions = [p for p in root.iterdir() if re.fullmatch(r"\d+(\.\d+)*", p.name)]
        versions.sort(key=lambda p: tuple(int(n) for n in p.name.split(".")), reverse=True)
        candidates += [p / "bin" for p in versions]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    return next((c for c in candidates if _has_binaries(c)), None)


def _as_root() -> bool:
    return os.geteuid() == 0


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed"
    if _as_root():
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root, and there is no {OS_USER!r} user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root, and runuser is not installed"
    return None


def binaries_available() -> bool:
    """Whether :meth:`PostgresServer.start` can work here."""
    return unavailable_reason() is None


def free_port() -> int:
    """A TCP port on 127.0.0.1 free a moment ago: the system's pick for port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, for one test session (or worker)."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
        self.bindir = found
        self.directory: Path | None = None
        self.port: int | None = None
        self._databases = 0

    # -- paths -------------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self._directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self._directory / "socket"

    @property
    def log(self) -> Path:
        return self._directory / "server.log"

    @property
    def _directory(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the server is not started")
        return self.directory

    # -- life cycle --------------------------------------------------------------------------

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A server binary, as the ``postgres`` user when we are root. Run from the cluster's
        directory: that user may not be allowed into our working directory."""
        command = [str(self.bindir / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", OS_USER, "--", *command]
        return subprocess.run(command, cwd=self._directory, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}{log}")

    def start(self) -> None:
        """initdb, then pg_ctl start, waiting until the server takes connections."""
        if self.directory is not None:
            raise RuntimeError("the server is already started")
        # mkdtemp makes 0700; 0755 lets the postgres user reach data/ and socket/ when
        # we are root (the base, normally /tmp, must be traversable too).
        self.directory = Path(tempfile.mkdtemp(prefix="mailflow-pg-"))
        try:
            self.directory.chmod(0o755)
            self.socket_dir.mkdir()
            if _as_root():
                owner = pwd.getpwnam(OS_USER)
                for path in (self.directory, self.socket_dir):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            # --no-sync only skips initdb's own final flush of the new cluster's files:
            # the server below still runs with fsync on. C locale: the same everywhere.
            self._check(self._run("initdb", "-D", str(self.data), "-U", SUPERUSER,
                                  "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"),
                        "initdb")
            self._launch()
        except BaseException:
            self._remove()
            raise

    def _launch(self) -> None:
        # The port was free when picked, but another process may take it before the server
        # binds it: pick again, a few times, only for that failure.
        for attempt in range(3):
            self.port = free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.socket_dir}",
                f"-c max_connections={MAX_CONNECTIONS}",
                # The defaults, said out loud: what "committed before 250" rests on.
                "-c fsync=on",
                "-c synchronous_commit=on",
            ])
            result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                               "-t", str(TIMEOUT), "-o", options, "start")
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if result.returncode != 0 and "could not bind" in log and attempt < 2:
                self.log.unlink()
                continue
            self._check(result, "pg_ctl start")
            return

    def stop(self) -> None:
        """Stop the server at once (immediate: nothing to keep) and remove its directory."""
        if self.directory is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._check(self._run("pg_ctl", "-D", str(self.data), "-m", "immediate",
                                      "-w", "-t", str(TIMEOUT), "stop"), "pg_ctl stop")
        finally:
            self._remove()

    def _remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        self.port = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """CREATE a database no one used before, and return its URL."""
        self._databases += 1
        name = f"test_{self._databases}_{uuid.uuid4().hex[:12]}"
        # CREATE DATABASE cannot run in a transaction: autocommit.
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


# -- the lab tests on PostgreSQL (MAILFLOW_TEST_STORE=postgresql) ---------------------------

_shared: PostgresServer | None = None
_databases: dict[Path, str] = {}


def shared_server() -> PostgresServer:
    """This process's server, started at its first use and stopped when the process ends:
    the ``postgres`` fixture and the labs of a PostgreSQL run share it."""
    global _shared
    if _shared is None:
        server = PostgresServer()
        server.start()
        atexit.register(server.stop)
        _shared = server
    return _shared


def lab_store(data: Path) -> str | None:
    """The store a test lab on ``data`` uses: None (SQLite in ``data``) unless
    MAILFLOW_TEST_STORE=postgresql, then a database of its own, the same one each time the
    test starts a lab on ``data`` again (a restart sees what the last run left)."""
    if os.environ.get("MAILFLOW_TEST_STORE") != "postgresql":
        return None
    key = data.resolve()
    if key not in _databases:
        _databases[key] = shared_server().new_database()
    return _databases[key]
