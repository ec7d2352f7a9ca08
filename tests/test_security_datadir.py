"""The lab's data directory and its start as a careless user or another account meets them:
file modes, an unusable token, another user's lock, a read-only store, a full disk, the API on
every IPv6 address, and a smarthost given at restart (issue 16, items 5, 7 and 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP

from mailflow.runtime.datadir import DataDirError
from mailflow.runtime.lab import Lab
from tests.conftest import LabFactory
from tests.helpers import queue_row, send
from tests.process import MAILFLOW, ephemeral_scenario, wait_started
from tests.test_dsn import Catcher
from tests.test_security_api import ALICE, get, started


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.sqlite_only
async def test_the_lab_files_are_private(lab: Lab) -> None:
    await send(lab, "EX2003-A", ALICE)  # the WAL has frames
    data = lab.data_dir
    assert mode(data) == 0o700
    for name in ("mailflow.db", "mailflow.db-wal", "mailflow.db-shm", "lab.json", "api-token",
                 "lock"):
        assert mode(data / name) == 0o600, name


@pytest.mark.sqlite_only
async def test_a_token_readable_by_others_is_tightened(
        lab_factory: LabFactory, capsys: pytest.CaptureFixture[str]) -> None:
    lab = await lab_factory.start()
    await lab_factory.stop(lab)
    token = lab.data_dir / "api-token"
    os.chmod(token, 0o644)
    os.chmod(lab.data_dir / "mailflow.db", 0o644)
    capsys.readouterr()
    lab = await lab_factory.start()
    assert mode(token) == 0o600 and mode(lab.data_dir / "mailflow.db") == 0o600
    assert "was readable by others (mode 0644); now 0600" in capsys.readouterr().err


# -- item 7: bad state in the data directory ----------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe\x00binary", b"two words\n"],
                         ids=["empty", "newline", "binary", "spaces"])
async def test_a_bad_token_file_stops_the_start_in_one_line(
        lab_factory: LabFactory, content: bytes) -> None:
    lab = lab_factory.build()
    lab.data_dir.mkdir(mode=0o700)
    (lab.data_dir / "api-token").write_bytes(content)
    with pytest.raises(DataDirError, match="does not hold an API token"):
        await lab.start()
    (lab.data_dir / "api-token").unlink()  # as the error says
    lab = await lab_factory.start()  # the lock was let go, and a new token made
    assert lab.token


def run_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}",
                                      "--clear-groups"]
    return subprocess.run([*prefix, *MAILFLOW, *args], capture_output=True, text=True,
                          timeout=60, cwd="/")


def test_mailflow_run_with_a_binary_token_exits_2_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "api-token").write_bytes(b"\x00\xff")
    (data / "api-token").chmod(0o600)
    result = run_cli("run", "--scenario", str(ephemeral_scenario(tmp_path)), "--data", str(data),
                     "--http", "127.0.0.1:0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "does not hold an API token" in result.stderr


NOBODY = 65534


@pytest.fixture
def nobody() -> int:
    """The uid of another user who can run mailflow: root is needed to act as that user,
    and the user must be able to read this Python environment (.ci/run makes its venv
    readable to all)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    probe = run_cli("--version", user=NOBODY)
    if probe.returncode != 0:
        message = f"user {NOBODY} cannot run mailflow here: {probe.stderr.strip()[-200:]}"
        if os.environ.get("MAILFLOW_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return NOBODY


def test_a_cli_command_of_another_user_says_permission_denied(tmp_path: Path,
                                                              nobody: int) -> None:
    tmp_path.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "lock").touch(mode=0o600)
    result = run_cli("clock", "--data", str(data), user=nobody)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "permission denied" in result.stderr


async def test_a_read_only_store_stops_the_start_in_one_line(nobody: int) -> None:
    # Where the other user can reach it (pytest's own directory is root's alone).
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        Path(top).chmod(0o755)
        lab = await started(Path(top))
        await lab.stop()
        data = lab.data_dir
        for path in [data, *data.iterdir()]:
            os.chown(path, nobody, nobody)
        (data / "mailflow.db").chmod(0o400)
        result = run_cli("run", "--data", str(data), "--http", "127.0.0.1:0", "--listen",
                         "127.0.0.1", user=nobody)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "running" not in result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "cannot write" in result.stderr and "readonly" in result.stderr



# -- item 5 and 7 as a user runs it ----------------------------------------------------------


def test_run_on_all_ipv6_addresses_warns_and_wants_the_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*MAILFLOW, "run", "--scenario", str(ephemeral_scenario(tmp_path)), "--data", str(data),
         "--speed", "0", "--http", "[::]:0", "--token-for-reads"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_started(proc, (data / "lab.json").exists)
        api_url = json.loads((data / "lab.json").read_text())["api"]
        assert api_url.startswith("http://[::]:")
        port = api_url.rsplit(":", 1)[1]
        for name in ("mailflow.db", "mailflow.db-wal", "mailflow.db-shm", "lab.json"):
            assert mode(data / name) == 0o600, name
        token = (data / "api-token").read_text().strip()
        status, _ = asyncio.run(get(f"http://[::1]:{port}/api/v1/clock"))
        assert status == 401
        status, _ = asyncio.run(get(f"http://[::1]:{port}/api/v1/clock", token=token))
        assert status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "WARNING: the API at http://[::]:" in err and "reads need the token" in err


# -- item 9: --smarthost with mail waiting in unreachable -------------------------------------


@pytest.mark.lab(relay_networks=("127.0.0.0/8",))
async def test_a_smarthost_given_at_restart_takes_the_waiting_mail(
        lab_factory: LabFactory, caplog: pytest.LogCaptureFixture) -> None:
    lab = await lab_factory.start()
    await send(lab, "EX2003-A", "someone@example.org")
    await lab.settle()
    assert (await queue_row(lab, "EX2003-A", "unreachable"))["message_count"] == 1
    await lab_factory.stop(lab)

    catcher = Catcher()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(catcher), "127.0.0.1", 0)
    try:
        caplog.clear()
        lab = await lab_factory.start(smarthost=f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await lab.settle()
        # Before the fix the commit hook hit the transport before it existed; asyncio
        # logged the AttributeError ("Exception in callback Lab._on_commit").
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        [(_, rcpts, _)] = catcher.received
        assert rcpts == ["someone@example.org"]
        assert (await queue_row(lab, "EX2003-A", "unreachable"))["message_count"] == 0
    finally:
        await lab_factory.stop_all()
        server.close()
        await server.wait_closed()


# -- item 7: a full disk is 452 4.3.1, and mail is taken again when there is room -------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a disk that can really fill up (needs the right to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_a_full_disk_is_452_4_3_1(small_disk: Path) -> None:
    lab = await started(small_disk)
    try:
        filler = small_disk / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        # More than any free page the WAL may still hold, in lines SMTP allows.
        big = "".join(f"X-Filler-{n}: {'x' * 800}\r\n" for n in range(250))
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(lab, "EX2003-A", ALICE, headers=big)
        assert (refused.value.code, refused.value.message[:5]) == (452, "4.3.1")
        filler.unlink()
        await send(lab, "EX2003-A", ALICE, headers=big)
    finally:
        await lab.stop()
