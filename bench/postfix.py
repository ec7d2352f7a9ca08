"""A throw-away Postfix as a system under load: its own configuration, queue and data
directories under /tmp, smtpd on a free port of 127.0.0.1, virtual(8) into one Maildir.

In: the process registry and the paths of ``postfix`` and ``postconf`` (run as root,
with Debian's /etc/postfix as the template). Out: a started ``System`` whose
``delivered`` counts the Maildir's files, and the ``delay=`` of each delivery.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bench.postfix_conf import master_cf
from bench.procs import Processes, free_port, wait_port, wait_until
from bench.results import POSTFIX
from bench.systems import System

POSTFIX_RCPT = "alice@bench.test"


def settings(top: Path, port: int, pw: pwd.struct_passwd) -> dict[str, str]:
    """main.cf settings of the throw-away instance (everything else: the defaults)."""
    vmail = top / "vmail"
    return {
        "queue_directory": str(top / "spool"),
        "data_directory": str(top / "lib"),
        "maillog_file": str(top / "maillog"),
        "maillog_file_prefixes": str(top),
        "syslog_name": f"mailflow-bench-postfix-{port}",
        "myhostname": "postfix.bench.test",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mydestination": "",
        "mynetworks": "127.0.0.0/8",
        "relay_domains": "",
        "alias_maps": "",
        "alias_database": "",
        "smtpd_tls_security_level": "none",
        "smtp_tls_security_level": "none",
        "virtual_mailbox_domains": "bench.test",
        "virtual_mailbox_base": str(vmail),
        "virtual_mailbox_maps": f"inline:{{{POSTFIX_RCPT}=alice/}}",
        "virtual_uid_maps": f"static:{pw.pw_uid}",
        "virtual_gid_maps": f"static:{pw.pw_gid}",
    }


class Postfix(System):
    """A throw-away Postfix (own config, queue and data directories under /tmp, where the
    postfix user can reach them) accepting bench.test and delivering it with virtual(8)
    into one Maildir. Its defaults are kept (in_flow_delay and all)."""

    name = POSTFIX
    rcpt = POSTFIX_RCPT

    def __init__(self, procs: Processes, postfix: str, postconf: str) -> None:
        self.procs, self.postfix, self.postconf = procs, postfix, postconf
        self.top = Path(tempfile.mkdtemp(prefix="mailflow-bench-postfix-"))
        self.top.chmod(0o755)  # the postfix user must reach its queue and data directories
        self.config = self.top / "etc"
        self.maildir = self.top / "vmail" / "alice"
        self.started = False

    def _cmd(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([self.postfix, "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {done.stdout}{done.stderr}"
                               f"{self.maillog()[-3000:]}")
        return done.stdout + done.stderr

    def maillog(self) -> str:
        path = self.top / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        pw = pwd.getpwnam("postfix")
        self.config.mkdir()
        (self.top / "spool").mkdir()
        vmail = self.top / "vmail"
        vmail.mkdir()
        os.chown(vmail, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        shutil.copy("/etc/postfix/main.cf", self.config / "main.cf")
        (self.config / "master.cf").write_text(
            master_cf(Path("/etc/postfix/master.cf").read_text(), self.port))
        subprocess.run([self.postconf, "-c", str(self.config), "-e",
                        *(f"{k} = {v}" for k, v in settings(self.top, self.port, pw).items())],
                       check=True, capture_output=True, timeout=60)
        self._cmd("check")
        self._cmd("start")
        self.started = True
        self.procs.cleanups.append(self.stop)
        wait_port(self.port, None, 30)
        pid_file = self.top / "spool" / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            self.pid = int(pid_file.read_text().split()[0])

    def delivered(self) -> int:
        count = 0
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                count += sum(1 for _ in os.scandir(self.maildir / sub))
        return count

    def delays(self, since: int = 0) -> list[float]:
        """delay= of every message delivered to the Maildir, from byte ``since`` of the log."""
        text = self.maillog()[since:]
        return [float(m.group(1)) for m in re.finditer(
            r"delay=([\d.]+),.*status=sent \(delivered to maildir\)", text)]

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._cmd("stop", check=False)
        master = self.pid

        def gone() -> bool:
            return master is None or not Path(f"/proc/{master}").exists()

        with contextlib.suppress(TimeoutError):
            wait_until(gone, 30, "postfix stop", interval=0.1)
        if master is not None and not gone():
            self._cmd("abort", check=False)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(master), signal.SIGKILL)
        shutil.rmtree(self.top, ignore_errors=True)

