"""STARTTLS and AUTH over real sockets: aiosmtplib and the real swaks against a lab whose
servers require TLS and AUTH, the certificate made on first run, and the hop over STARTTLS."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import stat
import subprocess
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from mailflow.scenarios import ScenarioError
from mailflow.smtp.tls import TLS_DIR, server_context
from routing.sender import LinkError, Sender
from stores.topology import Scenario, SmtpSecurity
from tests.conftest import LabFactory, require_tool
from tests.helpers import RefuseNobody, api, mailbox

LOGINS = (("app", "s3cret"),)


def secured(**security: object) -> Scenario:
    """mixed-2003 with every server's security set to ``security``, and one login."""
    base = scenarios.load("mixed-2003")
    servers = tuple(dataclasses.replace(s, security=SmtpSecurity(**security))  # type: ignore[arg-type]
                    for s in base.servers)
    return dataclasses.replace(base, servers=servers, logins=LOGINS)


def trusting() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client(lab: Lab, server: str = "EX2003-A", **options: object) -> aiosmtplib.SMTP:
    host, port = lab.endpoint_address(server)
    return aiosmtplib.SMTP(hostname=host, port=port, local_hostname="app.example.net",
                           tls_context=trusting(), **options)  # type: ignore[arg-type]


MESSAGE = b"From: <app@example.net>\r\nSubject: tls\r\n\r\nHello.\r\n"
STRICT = {"require_tls": True, "auth": "logins", "auth_required": True}


@pytest.mark.lab(scenario=secured(**STRICT))
async def test_starttls_then_auth_login_delivers(lab: Lab) -> None:
    async with client(lab, start_tls=True) as smtp:
        await smtp.ehlo()
        assert smtp.supports_extension("auth") and not smtp.supports_extension("starttls")
        await smtp.login("app", "s3cret")
        await smtp.sendmail("app@example.net", ["alice@contoso.test"], MESSAGE)
    await lab.settle()
    assert (await mailbox(lab, "alice@contoso.test"))["message_count"] == 1


@pytest.mark.lab(scenario=secured(**STRICT))
async def test_before_starttls_only_ehlo_noop_starttls_quit(lab: Lab) -> None:
    async with client(lab, start_tls=False) as smtp:
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        assert not smtp.supports_extension("auth")  # not offered in plain text
        code, text = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGFwcABzM2NyZXQ=")
        assert (code, text.split()[0]) == (530, "5.7.0")
        code, text = await smtp.execute_command(b"MAIL", b"FROM:<app@example.net>")
        assert (code, text.split()[0]) == (530, "5.7.0")
        assert (await smtp.noop()).code == 250


@pytest.mark.lab(scenario=secured(auth="logins"))
async def test_auth_before_tls_is_refused_unless_allowed(lab: Lab) -> None:
    async with client(lab, start_tls=False) as smtp:
        code, text = await smtp.execute_command(b"EHLO", b"app.example.net")
        assert "STARTTLS" in text and "AUTH" not in text
        code, text = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGFwcABzM2NyZXQ=")
        assert (code, text.split()[0]) == (538, "5.7.11")
        await smtp.starttls()
        await smtp.ehlo()
        assert (await smtp.login("app", "s3cret")).code == 235


@pytest.mark.lab(scenario=secured(**STRICT))
async def test_wrong_password_and_no_auth_are_refused(lab: Lab) -> None:
    async with client(lab, start_tls=True) as smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.login("app", "wrong")
        assert refused.value.code == 535
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as no_auth:
            await smtp.sendmail("app@example.net", ["alice@contoso.test"], MESSAGE)
        assert no_auth.value.code == 530
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"]


@pytest.mark.lab(scenario=secured(auth="any", auth_before_tls=True))
async def test_auth_in_plain_text_when_the_server_allows_it(lab: Lab) -> None:
    async with client(lab, start_tls=False) as smtp:
        await smtp.ehlo()
        assert smtp.supports_extension("auth")
        assert (await smtp.login("anyone", "anything")).code == 235
        code, _ = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGEAYg==")
        assert code == 503  # once per session


async def test_the_certificate_is_made_once_with_a_private_key(lab_factory: LabFactory
                                                              ) -> None:
    lab = await lab_factory.start()
    folder = lab.data_dir / TLS_DIR
    key = folder / "EX2003-A.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    before = (folder / "EX2003-A.crt").read_bytes()
    await lab.stop()
    again = await lab_factory.start()
    assert (folder / "EX2003-A.crt").read_bytes() == before
    async with client(again, start_tls=True) as smtp:  # every public port offers STARTTLS
        await smtp.sendmail("app@example.net", ["alice@contoso.test"], MESSAGE)


@pytest.mark.lab(scenario=secured(require_tls=True))
async def test_the_hop_speaks_starttls_to_a_server_that_requires_it(lab: Lab) -> None:
    async with client(lab, start_tls=True) as smtp:  # to carol, on EX2003-B: over the hop
        await smtp.sendmail("app@example.net", ["carol@contoso.test"], MESSAGE)
    await lab.settle()
    assert (await mailbox(lab, "carol@contoso.test"))["message_count"] == 1


def test_scenario_keys_are_checked() -> None:
    base = scenarios.load("mixed-2003").source
    bad = base.replace('smtp_port = 2525', 'smtp_port = 2525\nauth = "kerberos"')
    with pytest.raises(ScenarioError, match=r"servers\[0\].auth: unknown value"):
        scenarios.parse(bad, "t")
    bad = base.replace('smtp_port = 2525', 'smtp_port = 2525\nauth_required = true')
    with pytest.raises(ScenarioError, match="auth_required"):
        scenarios.parse(bad, "t")
    good = base.replace('smtp_port = 2525', 'smtp_port = 2525\nrequire_tls = true\n'
                        'auth = "logins"') + '\n[[logins]]\nuser = "app"\npassword = "pw"\n'
    parsed = scenarios.parse(good, "t")
    assert parsed.servers[0].security.require_tls and parsed.logins == (("app", "pw"),)


@pytest.mark.tools
@pytest.mark.lab(scenario=secured(**STRICT))
async def test_swaks_tls_auth_plain_delivers(lab: Lab) -> None:
    swaks = require_tool("swaks")
    host, port = lab.endpoint_address("EX2003-A")
    proc = await asyncio.create_subprocess_exec(
        swaks, "--to", "alice@contoso.test", "--from", "app@example.net", "--server", host,
        "--port", str(port), "--tls", "--auth", "PLAIN", "--auth-user", "app",
        "--auth-password", "s3cret", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    transcript = out.decode()
    assert proc.returncode == 0, transcript
    assert "<~  235 2.7.0" in transcript and "Queued mail for delivery" in transcript
    await lab.settle()
    assert (await mailbox(lab, "alice@contoso.test"))["message_count"] == 1


@pytest.mark.tools
@pytest.mark.lab(scenario=secured(**STRICT))
async def test_swaks_auth_without_tls_is_refused(lab: Lab) -> None:
    swaks = require_tool("swaks")
    host, port = lab.endpoint_address("EX2003-A")
    proc = await asyncio.create_subprocess_exec(
        swaks, "--to", "alice@contoso.test", "--server", host, "--port", str(port),
        "--auth", "PLAIN", "--auth-user", "app", "--auth-password", "s3cret",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    transcript = out.decode()
    assert proc.returncode != 0, transcript
    # AUTH is not offered in plain text: swaks gives up before MAIL.
    assert "*** Host did not advertise authentication" in transcript, transcript
    assert "MAIL FROM" not in transcript


class TlsCatcher(RefuseNobody):
    """A smarthost that requires STARTTLS and notes whether each message came over TLS."""

    def __init__(self) -> None:
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.over_tls.append(session.ssl is not None)
        return "250 2.0.0 caught"


async def test_the_smarthost_client_uses_starttls_when_asked(tmp_path: Path) -> None:
    caught = TlsCatcher()
    context = server_context(SmtpSecurity(), tmp_path, "SMARTHOST", "smarthost.test")
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(caught, tls_context=context, require_starttls=True), "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    outgoing = [("tester@example.net", ["friend@example.org"], b"Subject: s\r\n\r\nbody\r\n")]
    sender = Sender()
    try:
        sent = [r async for r in sender.send(("EX2003-A", "[smarthost]", 0), address,
                                             "EX2003-A.contoso.test", outgoing,
                                             smarthost=True, tls="starttls")]
        assert sent == [(0, {})] and caught.over_tls == [True]
        plain = [r async for r in sender.send(("EX2003-A", "[smarthost]", 1), address,
                                              "EX2003-A.contoso.test", outgoing,
                                              smarthost=True, tls="off")]
        assert plain[0][1]["friend@example.org"][0] == 530  # must issue STARTTLS first
        with pytest.raises(LinkError, match="CERTIFICATE_VERIFY_FAILED"):  # self-signed
            _ = [r async for r in sender.send(("EX2003-A", "[smarthost]", 2), address,
                                              "EX2003-A.contoso.test", outgoing,
                                              smarthost=True, tls="verify")]
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert caught.over_tls == [True]


@pytest.mark.lab(scenario=secured(require_tls=True))
async def test_a_failed_handshake_ends_only_that_session(lab: Lab) -> None:
    host, port = lab.endpoint_address("EX2003-A")
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    writer.write(b"EHLO junk.example.net\r\nSTARTTLS\r\n")
    while not (line := await reader.readline()).startswith(b"220"):
        assert line.startswith(b"250")
    writer.write(b"this is not a TLS ClientHello\r\n" * 4)
    await writer.drain()
    assert await reader.read() == b""  # the endpoint closed the connection
    writer.close()
    async with client(lab, start_tls=True) as smtp:  # and still serves
        await smtp.sendmail("app@example.net", ["alice@contoso.test"], MESSAGE)


@pytest.mark.lab(scenario=secured(auth="any"))
async def test_commands_pipelined_after_starttls_in_plain_text_are_dropped(lab: Lab) -> None:
    """RFC 3207 §5: what follows STARTTLS before the handshake is not taken as a command."""
    host, port = lab.endpoint_address("EX2003-A")
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    writer.write(b"EHLO a.example.net\r\nSTARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
    while not (line := await reader.readline()).startswith(b"220"):
        assert line.startswith(b"250")
    await writer.start_tls(trusting())
    writer.write(b"EHLO a.example.net\r\n")
    while (line := await reader.readline()).startswith(b"250-"):
        pass
    writer.write(b"RCPT TO:<alice@contoso.test>\r\n")
    assert (await reader.readline()).startswith(b"503 5.5.1 Need MAIL")
    writer.write(b"QUIT\r\n")
    assert (await reader.readline()).startswith(b"221")
    writer.close()
