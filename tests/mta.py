"""Real MTAs started privately on 127.0.0.1 for one test: Postfix and Exim, as Debian ships them.

Each instance has its own configuration, queue and log in a fresh directory, listens on a free
port, and keeps what it accepts in its queue instead of delivering it (Postfix: the hold queue;
Exim: ``queue_only``), so a test reads back exactly what the server stored: one ``Queued`` per
message, with its sender and recipients.  Nothing touches the machine's own mail system.

Both need root (their daemons change users) and the Debian packages: ``postfix`` for Postfix, and
Exim's ``exim4-daemon-light`` unpacked beside it by ``.ci/install-exim`` (the two packages conflict,
so Exim is not installed, only unpacked; the script also adds the ``Debian-exim`` user the binary
looks up).  Locally a missing piece skips; in CI (``SMTP_FSM_REQUIRE_TOOLS=1``) it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REQUIRE_TOOLS, require_tool

from smtp_fsm.testing.ports import free_port

HOST = "127.0.0.1"
#: Where .ci/install-exim unpacks Debian's Exim (SMTP_FSM_EXIM names another binary).
EXIM = os.environ.get("SMTP_FSM_EXIM", "/opt/smtp-fsm-exim/usr/sbin/exim4")
#: Starting or stopping a server never takes longer than this.
START_SECONDS = 30.0
#: A refused address: each server refuses it as a sender (at MAIL) or as a recipient (at RCPT).
REFUSED = "refused@example.org"


@dataclass(frozen=True)
class Queued:
    sender: str
    recipients: tuple[str, ...]


@dataclass
class MTA:
    name: str
    port: int
    _queue: list[str]

    @property
    def host(self) -> str:
        return HOST

    def queued(self) -> list[Queued]:
        """Every message the server stored, read from its queue."""
        out = subprocess.run(self._queue, capture_output=True, text=True, timeout=START_SECONDS, check=True).stdout
        return parse_postqueue(out) if self.name == "postfix" else parse_exim_bp(out)


def _unavailable(message: str) -> None:
    if REQUIRE_TOOLS:
        pytest.fail(f"{message} (SMTP_FSM_REQUIRE_TOOLS=1: .ci/run should have set it up)")
    pytest.skip(message)


def _need_root(name: str) -> None:
    if os.geteuid() != 0:
        _unavailable(f"a private {name} needs root (its daemons change users)")


@contextmanager
def _directory(name: str) -> Iterator[Path]:
    """A fresh directory the server's unprivileged users can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f"smtp-fsm-{name}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.recv(512)  # the greeting: the server is up, not just its socket
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server listening on {HOST}:{port} after {START_SECONDS:.0f} s")


# --- Postfix ----------------------------------------------------------------------

#: main.cf of the private instance; a test adds to it.  Mail from 127.0.0.1 is accepted for any
#: domain, then held: the hold queue is the record of what was stored.
POSTFIX_MAIN = {
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": HOST,
    "inet_protocols": "ipv4",
    "myhostname": "postfix.test",
    "mydestination": "",
    "mynetworks": "127.0.0.0/8",
    "smtpd_delay_reject": "no",  # a refused sender is refused at MAIL, not at its first RCPT
    "smtpd_sender_restrictions": f"check_sender_access inline:{{{REFUSED}=REJECT}}",
    "smtpd_recipient_restrictions": f"check_recipient_access inline:{{{REFUSED}=REJECT}}, permit_mynetworks, reject",
    "smtpd_end_of_data_restrictions": "check_client_access static:HOLD",
}


@contextmanager
def private_postfix(**main: str) -> Iterator[MTA]:
    """A Postfix of its own (``postfix -c``) on a free port; ``main`` adds to or overrides POSTFIX_MAIN."""
    postfix = require_tool("postfix", "Debian package postfix")
    _need_root("Postfix")
    port = free_port()
    with _directory("postfix") as root:
        etc, data = root / "etc", root / "data"
        etc.mkdir()
        data.mkdir()
        (root / "spool").mkdir()
        shutil.chown(data, "postfix")
        settings = {**POSTFIX_MAIN, "queue_directory": str(root / "spool"), "data_directory": str(data),
                    "maillog_file": str(root / "maillog"), "maillog_file_prefixes": str(root), **main}
        (etc / "main.cf").write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        shutil.copy("/etc/postfix/master.cf", etc / "master.cf")
        postconf = ["postconf", "-c", str(etc)]
        for change in (["-M#", "smtp/inet"],  # not the machine's port 25: ours
                       ["-M", f"{HOST}:{port}/inet = {HOST}:{port} inet n - n - - smtpd"],
                       ["-F", "*/*/chroot = n"],  # no copy of /etc inside the queue directory
                       ["-M", "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"]):
            subprocess.run([*postconf, *change], check=True, timeout=START_SECONDS)
        control = [postfix, "-c", str(etc)]
        started = subprocess.run([*control, "start"], capture_output=True, text=True, timeout=START_SECONDS)
        if started.returncode != 0:
            log = (root / "maillog").read_text() if (root / "maillog").exists() else ""
            raise RuntimeError(f"postfix start failed: {started.stderr}{log[-2000:]}")
        try:
            _wait_listening(port)
            yield MTA("postfix", port, ["postqueue", "-c", str(etc), "-j"])
        finally:
            subprocess.run([*control, "stop"], capture_output=True, timeout=START_SECONDS)


def parse_postqueue(out: str) -> list[Queued]:
    """``postqueue -j``: one JSON object per message."""
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [Queued(r["sender"], tuple(rcpt["address"] for rcpt in r["recipients"])) for r in records]


# --- Exim ----------------------------------------------------------------------------

EXIM_CONFIG = """\
keep_environment =
primary_hostname = exim.test
spool_directory = {spool}
log_file_path = {logs}/%slog
daemon_smtp_ports = {port}
local_interfaces = {host}
tls_advertise_hosts =
queue_only = true
pipelining_advertise_hosts = *
chunking_advertise_hosts = *
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
{extra}
begin acl
acl_mail:
  deny senders = {refused}
  accept
acl_rcpt:
  deny recipients = {refused}
  accept
begin routers
begin transports
"""


@contextmanager
def private_exim(**main: str) -> Iterator[MTA]:
    """Debian's Exim with a configuration of its own (``-C``), in the foreground on a free port."""
    if not os.path.exists(EXIM):
        _unavailable(f"Exim is not unpacked at {EXIM}: run .ci/install-exim as root")
    _need_root("Exim")
    port = free_port()
    with _directory("exim") as root:
        spool, logs = root / "spool", root / "log"
        for path in (spool, logs):
            path.mkdir()
            shutil.chown(path, "Debian-exim")
        config = root / "exim.conf"
        extra = "".join(f"{key} = {value}\n" for key, value in main.items())
        config.write_text(EXIM_CONFIG.format(spool=spool, logs=logs, port=port, host=HOST, extra=extra,
                                             refused=REFUSED))
        daemon = subprocess.Popen([EXIM, "-C", str(config), "-bdf"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            try:
                _wait_listening(port)
            except RuntimeError as error:
                daemon.kill()
                raise RuntimeError(f"{error}: {daemon.communicate(timeout=START_SECONDS)[1]!r}") from None
            yield MTA("exim", port, [EXIM, "-C", str(config), "-bp"])
        finally:
            daemon.terminate()
            daemon.wait(timeout=START_SECONDS)


def parse_exim_bp(out: str) -> list[Queued]:
    """``exim -bp``: a line per message ("age size id <sender>"), its recipients indented below."""
    queued: list[Queued] = []
    sender: str | None = None
    recipients: list[str] = []
    for line in [*out.splitlines(), ""]:
        if not line.strip():
            if sender is not None:
                queued.append(Queued(sender, tuple(recipients)))
            sender, recipients = None, []
        elif line.startswith("          "):
            recipients.append(line.strip())
        else:
            sender = line.rsplit("<", 1)[1].rstrip(">")
    return queued

