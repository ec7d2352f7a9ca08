"""A lab's data directory: the files a running lab keeps there, and its lock.

In: a data directory path. Out: whether a lab runs on it (it holds the lock
file's flock while it runs; the kernel lets go even after kill -9), the API
token, and the names of the files the CLI reads. Every file the lab makes here is
private: the directory 0700, its files 0600 (``private``), and a token found
readable by others is tightened, saying so on stderr. A token that is not text,
empty or holds characters a bearer token cannot is a ``DataDirError``, one line.
Kept apart from ``mailflow.runtime.lab`` so that CLI commands need not import
the whole lab.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
import sys
from pathlib import Path

from mailflow.errors import LabError

TOKEN_FILE = "api-token"
LAB_FILE = "lab.json"
LOCK_FILE = "lock"
# RFC 6750's token68: what can follow "Bearer " in a header.
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


class DataDirError(LabError):
    """A file of the data directory the lab cannot use as it is."""

    status = 409


def prepare(data_dir: Path) -> None:
    """Make ``data_dir`` (mode 0700) if it does not exist yet."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def private(path: Path) -> None:
    """Make ``path`` (empty, 0600) unless it exists, and take from an existing one every
    permission of group and others. SQLite gives the -wal and -shm files it creates the
    mode of the database file, so a private ``mailflow.db`` keeps them private too."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def lock(data_dir: Path) -> int | None:
    """Take the data directory's lock; None when a running lab holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lab_running(data_dir: Path) -> bool:
    """Whether a lab runs on ``data_dir`` now (a lab.json left by kill -9 does not count).
    Opens the lock file read-only and tries a shared lock, so that it asks without
    needing to write: PermissionError only when the file cannot even be read."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_token(data_dir: Path) -> str:
    """The API token kept in ``data_dir``; DataDirError when it cannot be one."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_bytes().decode("ascii").strip()
    except UnicodeDecodeError:
        token = None
    if token is None or not TOKEN.fullmatch(token):
        raise DataDirError(f"{path} does not hold an API token (empty, binary or with"
                           " spaces); delete it and start the lab to make a new one")
    return token


def ensure_token(data_dir: Path) -> str:
    """The API token of ``data_dir``, made (mode 0600) on the first start; an existing one
    readable by group or others is tightened to 0600, and stderr says so."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            print(f"mailflow: {path} was readable by others (mode {mode:04o});"
                  " now 0600", file=sys.stderr)
        return read_token(data_dir)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
