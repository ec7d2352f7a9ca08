"""A lab's data directory: the files a running lab keeps there, and its lock.

In: a data directory path. Out: whether a lab runs on it (it holds the lock
file's flock while it runs; the kernel lets go even after kill -9), the API
token, and the names of the files the CLI reads. Kept apart from
``mailflow.runtime.lab`` so that CLI commands need not import the whole lab.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

TOKEN_FILE = "api-token"
LAB_FILE = "lab.json"
LOCK_FILE = "lock"


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
    """Whether a lab runs on ``data_dir`` now (a lab.json left by kill -9 does not count)."""
    if not (data_dir / LOCK_FILE).exists():
        return False
    fd = lock(data_dir)
    if fd is None:
        return True
    os.close(fd)
    return False


def read_token(data_dir: Path) -> str:
    return (data_dir / TOKEN_FILE).read_text().strip()


def ensure_token(data_dir: Path) -> str:
    """The API token of ``data_dir``, made (mode 0600) on the first start."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(data_dir)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
