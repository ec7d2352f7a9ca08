"""A real upstream MTA: a throw-away Postfix relays into the lab during a held move.

The Postfix instance runs with the main.cf and master.cf of docs/upstream-postfix.md,
read from that page (``doc_config``), with only its directory and its two ports replaced:
its own config, queue and data directories, a free port on 127.0.0.1, relaying for
127.0.0.0/8, and a transport map sending contoso.test to the lab's EX2003-A endpoint.
Postfix daemons run as the postfix user, which cannot enter pytest's private temporary
directory, so the instance lives in a directory of its own under /tmp, removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from mailflow.runtime.lab import Lab
from tests.conftest import require_tool
from tests.helpers import api, hold_move, mailbox, queue_depth

ALICE = "alice@contoso.test"
MESSAGES = 200
# Postfix's own delivery into the lab, polled; a bound on a stuck Postfix, not a timing check.
DEADLINE = 60.0
EMPTY = "Mail queue is empty"

pytestmark = pytest.mark.tools


# The page whose configuration the test runs, and what it names that the test replaces.
DOC = Path(__file__).resolve().parent.parent / "docs" / "upstream-postfix.md"
DOC_DIRECTORY, DOC_PORT, DOC_LAB_PORT = "/tmp/upstream-postfix", "2500", "2525"


def doc_config(name: str, directory: Path, port: int, lab_port: int) -> str:
    """The ``name`` (main.cf or master.cf) block of docs/upstream-postfix.md: the fenced
    block after its ``<!-- config: NAME -->`` marker, for an instance in ``directory``
    listening on ``port`` and relaying to the lab on ``lab_port``."""
    text = DOC.read_text()
    marker = f"<!-- config: {name} -->\n```\n"
    start = text.index(marker) + len(marker)
    block = text[start:text.index("```", start)]
    return (block.replace(DOC_DIRECTORY, str(directory))
            .replace(f"127.0.0.1:{DOC_PORT} inet", f"127.0.0.1:{port} inet")
            .replace(f"[127.0.0.1]:{DOC_LAB_PORT}", f"[127.0.0.1]:{lab_port}"))


def test_the_doc_config_is_complete() -> None:
    """Every setting the test depends on is in the page, so a replacement never misses."""
    main = doc_config("main.cf", Path("/x"), 1, 2)
    assert "queue_directory = /x/spool" in main and "[127.0.0.1]:2}" in main
    assert main.count("/x") == 4 and DOC_DIRECTORY not in main
    assert doc_config("master.cf", Path("/x"), 1, 2).startswith("127.0.0.1:1 inet")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(*argv: str, check: bool = True) -> str:
    """Output of a Postfix command (which logs its errors to its maillog_file)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{text}")
    return text


async def _running(postfix: str, config: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        postfix, "-c", str(config), "status",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return await proc.wait() == 0


@contextlib.asynccontextmanager
async def postfix_instance(lab_port: int) -> AsyncIterator[tuple[Path, int]]:
    """A started Postfix relaying contoso.test to 127.0.0.1:lab_port; yields (config, port)."""
    postfix = require_tool("postfix")
    require_tool("postqueue")
    if os.geteuid() != 0:
        pytest.skip("starting a Postfix instance needs root")
    top = Path(tempfile.mkdtemp(prefix="mailflow-postfix-"))
    top.chmod(0o755)  # the postfix user must reach its queue and data directories
    config, spool = top / "etc", top / "spool"
    config.mkdir()
    spool.mkdir()  # postfix check creates what goes in it, not the directory itself
    port = _free_port()
    started = False
    try:
        (config / "main.cf").write_text(doc_config("main.cf", top, port, lab_port))
        (config / "master.cf").write_text(doc_config("master.cf", top, port, lab_port))
        await _run(postfix, "-c", str(config), "check")
        await _run(postfix, "-c", str(config), "start")
        started = True
        yield config, port
    except BaseException:
        log = top / "maillog"
        if log.exists():
            print(log.read_text()[-5000:])
        raise
    finally:
        if started:
            await _run(postfix, "-c", str(config), "stop", check=False)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEADLINE):
                    while await _running(postfix, config):
                        await asyncio.sleep(0.2)
        shutil.rmtree(top, ignore_errors=True)


async def postfix_queue(config: Path) -> str:
    return await _run(require_tool("postqueue"), "-c", str(config), "-p", check=False)


async def test_postfix_relays_200_messages_through_a_held_move(lab: Lab) -> None:
    _, lab_port = lab.endpoint_address("EX2003-A")
    move = await hold_move(lab, ALICE, "EX2003-B")
    async with postfix_instance(lab_port) as (config, port):
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                                   local_hostname="client.example.net") as smtp:
            for n in range(MESSAGES):
                body = (f"From: <tester@example.net>\r\nTo: <{ALICE}>\r\n"
                        f"Subject: via postfix {n}\r\n"
                        f"Message-ID: <postfix-{n}@example.net>\r\n\r\nHello {n}.\r\n")
                _, reply = await smtp.sendmail("tester@example.net", [ALICE], body.encode())
                assert reply.startswith("2.0.0 Ok: queued"), reply

        # Postfix hands every message to the lab; poll its queue, flushing it as we go.
        postqueue = require_tool("postqueue")
        async with asyncio.timeout(DEADLINE):
            while EMPTY not in (listing := await postfix_queue(config)):
                await _run(postqueue, "-c", str(config), "-f", check=False)
                await asyncio.sleep(0.5)
        assert EMPTY in listing

        # Inside the lab they wait for the move: deferred on the source server.
        await lab.settle()
        assert await queue_depth(lab, "EX2003-A", "deferred") == MESSAGES
        assert (await mailbox(lab, ALICE))["message_count"] == 0

        status, doc = await api(lab, "POST", f"/api/v1/moves/{move}/complete")
        assert status == 200, doc
        await lab.settle()
        alice = await mailbox(lab, ALICE)
        assert (alice["server"], alice["message_count"]) == ("EX2003-B", MESSAGES)
        status, report = await api(lab, "GET", "/api/v1/audit")
        assert status == 200 and report["clean"], report
        assert report["accepted"] == MESSAGES
        status, rows = await api(lab, "GET", "/api/v1/queues")
        assert status == 200
        assert [r for r in rows if r["message_count"]] == []
        # Each one exactly once, and each came in from Postfix, one hop upstream.
        _, items = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}/messages?limit=1000")
        assert sorted(item["subject"] for item in items) == sorted(
            f"via postfix {n}" for n in range(MESSAGES))
        status, raw = await api(lab, "GET", f"/api/v1/messages/{items[0]['id']}/raw")
        assert status == 200 and "by upstream.example.net (Postfix)" in raw
        assert EMPTY in await postfix_queue(config)
