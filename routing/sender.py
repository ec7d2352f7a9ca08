"""The transport's SMTP client, run in a process of its own.

In: jobs from ``routing.transport``: one connection ("slot") of a link, the
address to send to, and the messages to send on that connection one after the
other. Out: for each message sent to the smarthost, the recipients it refused,
and at the end of the job the error that broke the connection, if one did. The
worker keeps each slot's connection open from job to job, so a link reuses its
connections. A link between two servers of the lab is spoken pipelined
(``routing.pipelining``); the smarthost, which may be any server, with aiosmtplib.

Why a process: over the SMTP hop between two servers of the lab, the lab pays
for both ends of every session. In one process both ends would share one GIL,
and the sending end alone costs about as much as the receiving one. The
worker runs the sending end on another core. Every endpoint is still served by
the lab's own event loop, and the store is still written only by the lab.

The two ends talk over the worker's stdin and stdout. Each frame is a 4-byte
length followed by a pickle. The worker is the lab's own child and nothing else
writes to those pipes. When the lab closes the worker's stdin (or dies), the
worker closes its connections and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from routing.pipelining import (
    Outgoing,
    PipeliningClient,
    ReplyError,
    needs_smtputf8,
    unverified_context,
)

log = logging.getLogger(__name__)

# An SMTP reply: code and text.
SMTPReply = tuple[int, str]
# A connection of a link: (server, target, slot number).
Slot = tuple[str, str, int]
# The worker's client on a slot: pipelined to a server of the lab, aiosmtplib to the smarthost.
Client = aiosmtplib.SMTP | PipeliningClient
# What breaks a connection (and sends its link to Retry) rather than the worker.
SEND_ERRORS = (aiosmtplib.SMTPException, ReplyError, OSError, TimeoutError)
# The seconds a client waits for a connect or a reply.
TIMEOUT = 30
# How long a stopping lab waits for the worker to say QUIT on its connections.
STOP_SECONDS = 5.0

_LENGTH = struct.Struct(">I")


class LinkError(Exception):
    """A connection of a link broke at message ``index`` of its job; the text is what the
    link queue shows as its last error."""

    def __init__(self, text: str, index: int) -> None:
        super().__init__(text)
        self.index = index


def describe(exc: BaseException) -> str:
    """An error as a link queue shows it."""
    return f"{type(exc).__name__}: {exc}"


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        return pickle.loads(await reader.readexactly(_LENGTH.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


# -- the lab's side -----------------------------------------------------------------------


@dataclass
class _Process:
    """One run of the worker: its jobs waiting for replies, and why it is gone, once it is."""

    proc: asyncio.subprocess.Process
    jobs: dict[int, asyncio.Queue[tuple[Any, ...]]] = field(default_factory=dict)
    gone: str | None = None
    reading: asyncio.Task[None] | None = None
    used: bool = False  # has had a job


class Sender:
    """The lab's handle on the worker: started with the lab (``start``), and again by the
    first job after it died."""

    def __init__(self) -> None:
        self._worker: _Process | None = None
        self._next_job = 0
        self._starting = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The process id of the running worker, if one runs."""
        worker = self._worker
        return None if worker is None or worker.gone is not None else worker.proc.pid

    async def send(
        self, slot: Slot, address: tuple[str, int], helo: str, outgoing: Sequence[Outgoing],
        *, smarthost: bool = False, tls: str = "off",
    ) -> AsyncIterator[tuple[int, dict[str, SMTPReply]]]:
        """Send ``outgoing`` on ``slot`` (connected to ``address`` first if it is not);
        none: only connect. Raises ``LinkError`` when the connection breaks. To the
        ``smarthost``, yields (index, refused recipients) for each message as it is sent,
        and a 5xx to the sender or the data is a refusal of every recipient (``tls``: the
        scenario's ``smarthost_tls``, see ``smarthost_client``). To a server
        of the lab, yields nothing, and any refusal breaks the connection."""
        worker = await self.start()
        # No await since start: the worker cannot have gone without this job hearing of it.
        job = self._next_job = self._next_job + 1
        replies: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        worker.jobs[job] = replies
        worker.used = True
        try:
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(_frame(("send", job, slot, address, helo, list(outgoing),
                                            smarthost, tls)))
            await worker.proc.stdin.drain()
            while True:
                kind, *rest = await replies.get()
                if kind == "sent":
                    yield rest[0], rest[1]
                    continue
                index, error = rest
                if error is not None:
                    raise LinkError(error, index)
                return
        except ConnectionError as exc:  # the worker's stdin is gone
            raise LinkError(f"transport worker: {describe(exc)}", 0) from exc
        finally:
            del worker.jobs[job]

    async def start(self) -> _Process:
        """The running worker; a new one if there is none (the first job, or it died)."""
        async with self._starting:
            if self._worker is None or self._worker.gone is not None:
                # -P: never import a routing/ that happens to be in the working directory.
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-m", "routing.sender",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )
                worker = self._worker = _Process(proc)
                worker.reading = asyncio.get_running_loop().create_task(self._read(worker))
            return self._worker

    @staticmethod
    async def _read(worker: _Process) -> None:
        """Hand each reply of the worker to its job; once the worker is gone, end every job
        still waiting with an error."""
        assert worker.proc.stdout is not None
        while (reply := await _read_frame(worker.proc.stdout)) is not None:
            replies = worker.jobs.get(reply[1])
            if replies is not None:
                replies.put_nowait((reply[0], *reply[2:]))
        code = await worker.proc.wait()
        worker.gone = f"transport worker exited with code {code}"
        for replies in worker.jobs.values():
            replies.put_nowait(("done", 0, worker.gone))

    async def close(self) -> None:
        """Close the worker's stdin and wait for it to close its connections and exit."""
        worker = self._worker
        if worker is None or worker.reading is None:
            return
        stdin = worker.proc.stdin
        assert stdin is not None
        if not worker.used:
            # No connection to close: do not wait for it to finish starting first.
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        stdin.close()
        with contextlib.suppress(ConnectionError):
            await stdin.wait_closed()
        try:
            await asyncio.wait_for(asyncio.shield(worker.reading), STOP_SECONDS)
        except TimeoutError:
            worker.proc.kill()
            await worker.reading


# -- the worker's side --------------------------------------------------------------------


class _Worker:
    def __init__(self, out: asyncio.StreamWriter) -> None:
        self.out = out
        self.clients: dict[Slot, Client] = {}
        self.busy: dict[Slot, asyncio.Lock] = {}

    async def job(self, job: int, slot: Slot, address: tuple[str, int], helo: str,
                  outgoing: list[Outgoing], smarthost: bool, tls: str) -> None:
        index, error = 0, None
        async with self.busy.setdefault(slot, asyncio.Lock()):
            try:
                client = await self._client(slot, address, helo, smarthost, tls)
                if isinstance(client, PipeliningClient):
                    try:
                        await client.send(outgoing)
                    finally:
                        index = client.taken
                else:
                    for index, (mail_from, rcpts, data) in enumerate(outgoing):
                        refused = await _send_one(client, mail_from, rcpts, data)
                        self.out.write(_frame(("sent", job, index, refused)))
                index = len(outgoing)
            except SEND_ERRORS as exc:
                error = describe(exc)
                self._drop(slot)
            except Exception as exc:  # a bug here must fail the link, not hang it
                log.exception("sending on %s", slot)
                error = describe(exc)
                self._drop(slot)
        self.out.write(_frame(("done", job, index, error)))
        await self.out.drain()

    async def _client(self, slot: Slot, address: tuple[str, int], helo: str,
                      smarthost: bool, tls: str) -> Client:
        client = self.clients.get(slot)
        if client is not None and client.is_connected:
            return client
        if smarthost:
            client = smarthost_client(address, helo, tls)
            await client.connect()
        else:
            client = await PipeliningClient.connect(*address, helo, TIMEOUT)
        self.clients[slot] = client
        return client

    def _drop(self, slot: Slot) -> None:
        client = self.clients.pop(slot, None)
        if client is not None:
            client.close()

    async def quit_all(self) -> None:
        async def quit(client: Client) -> None:
            try:
                await client.quit()
            except SEND_ERRORS:
                client.close()

        await asyncio.gather(*(quit(c) for c in self.clients.values() if c.is_connected))


def smarthost_client(address: tuple[str, int], helo: str, tls: str) -> aiosmtplib.SMTP:
    """The client of the smarthost: STARTTLS required unless ``tls`` is "off", with the
    certificate checked against the system's CAs for "verify" and not for "starttls"."""
    options: dict[str, Any] = {"start_tls": tls != "off"}
    if tls == "starttls":
        options["tls_context"] = unverified_context()
    return aiosmtplib.SMTP(hostname=address[0], port=address[1], local_hostname=helo,
                           timeout=TIMEOUT, **options)


async def _send_one(client: aiosmtplib.SMTP, mail_from: str, rcpts: list[str], data: bytes
                    ) -> dict[str, SMTPReply]:
    """Send one message to the smarthost; returns the recipients it refused. A 5xx to the
    sender or the data is a refusal of every recipient."""
    options = ["SMTPUTF8"] if needs_smtputf8(mail_from, rcpts) else []
    try:
        refused, _ = await client.sendmail(mail_from, rcpts, data, mail_options=options)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return {r.recipient: (r.code, r.message) for r in exc.recipients}
    except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
        if exc.code < 500:
            raise
        return dict.fromkeys(rcpts, (exc.code, exc.message))
    return {rcpt: (reply.code, reply.message) for rcpt, reply in refused.items()}


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        sys.stdout.buffer)
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    worker = _Worker(out)
    jobs: set[asyncio.Task[None]] = set()
    while (request := await _read_frame(reader)) is not None:
        task = loop.create_task(worker.job(*request[1:]))
        jobs.add(task)
        task.add_done_callback(jobs.discard)
    for task in jobs:
        task.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    await worker.quit_all()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="mailflow sender: %(message)s")
    asyncio.run(_serve())
