"""The TLS of an endpoint: its certificate, made on first run, and the contexts that use it.

In: a server's ``SmtpSecurity`` and the lab's data directory. Out: the ``ssl.SSLContext``
aiosmtpd's STARTTLS takes (``server_context``), from the configured PEM files or else from
a self-signed certificate written once to ``<data>/tls/<SERVER>.crt`` and ``.key`` (the key
0600, the directory 0700).
The certificate is made with the ``cryptography`` package (an ECDSA P-256 key, valid for
the server's name, ``localhost`` and the loopback addresses). The clients' contexts
(hop, smarthost) are in ``routing.sender``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stores.topology import SmtpSecurity

TLS_DIR = "tls"
# A lab certificate outlives any lab; the clock of the lab is not the one TLS checks.
VALID_DAYS = 3650


def _names(hostname: str) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A new self-signed certificate for ``hostname`` and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailflow lab")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(_names(hostname), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file of mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def lab_certificate(data_dir: Path, server: str, hostname: str) -> tuple[Path, Path]:
    """The (certificate, key) files of ``server`` in the data directory, made if missing."""
    folder = data_dir / TLS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    cert, key = folder / f"{server}.crt", folder / f"{server}.key"
    if not (cert.exists() and key.exists()):
        cert_pem, key_pem = self_signed(hostname)
        for path in (cert, key):
            path.unlink(missing_ok=True)
        _write_private(key, key_pem)
        _write_private(cert, cert_pem)
    return cert, key


def server_context(security: SmtpSecurity, data_dir: Path, server: str, hostname: str
                   ) -> ssl.SSLContext:
    """The context of ``server``'s STARTTLS: its configured files, or the lab's own."""
    if security.tls_cert:
        cert, key = Path(security.tls_cert), Path(security.tls_key)
    else:
        cert, key = lab_certificate(data_dir, server, hostname)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context

