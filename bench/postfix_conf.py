"""The benchmark's throw-away Postfix's master.cf, written by bench/postfix.py.

In: the text of Debian's /etc/postfix/master.cf and a port. Out: the same services
with smtpd on 127.0.0.1:PORT, nothing chrooted (a throw-away queue directory has no
chroot files) and no pipe services for users and programs such an instance lacks.
"""

from __future__ import annotations

# Services that need users or programs a throw-away instance does not have.
UNUSED_SERVICES = ("maildrop", "uucp", "ifmail", "bsmtp", "scalemail-backend", "mailman")


def master_cf(text: str, port: int) -> str:
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):  # a continuation of the service above
            if not skipping:
                out.append(line)
            continue
        skipping = False
        fields = line.split()
        if not fields or line.startswith("#"):
            out.append(line)
            continue
        if fields[0] in UNUSED_SERVICES:
            skipping = True
            continue
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = f"127.0.0.1:{port}"
        if len(fields) >= 8:
            fields[4] = "n"  # chroot
        out.append("  ".join(fields))
    return "\n".join(out) + "\n"
