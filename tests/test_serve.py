"""``smtp-fsm serve``, run as a subprocess (``python -m smtp_fsm.serve``) and driven with SMTPClient.

Every wait is bounded and every server process is killed in a ``finally``, whatever the test did.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest

from smtp_fsm import AuthenticationError, RecipientsRefused, SenderRefused, SMTPClient
from smtp_fsm.serve import DEFAULT_PORT, Arrival, ServeConfig, ServeHandler, _listen, add_serve, cmd_serve
from smtp_fsm.testing.servers import RecordingHandler, free_port

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LISTENING = re.compile(r"^smtp-fsm serve: listening on (?P<where>\S+) \((?P<features>.*)\); press Ctrl-C to stop$")
CA_LINE = re.compile(r"^smtp-fsm serve: CA certificate: (?P<path>.+) \(the server's certificate is for .*\)$")
USER, PASSWORD = "alice", "correct horse"


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}


class Served:
    """A ``python -m smtp_fsm.serve`` process whose output is collected line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smtp_fsm.serve", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", env=_environment(),
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [threading.Thread(target=self._collect, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    def _collect(self, pipe: IO[str], lines: list[str]) -> None:
        for line in pipe:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails after ``timeout`` seconds or when the process ends."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout:
                    found = regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    pytest.fail(f"no line matching {regex.pattern!r} within {timeout} s; "
                                f"stdout={self.stdout!r} stderr={self.stderr!r}")
                self._changed.wait(min(left, 0.1))

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send ``signum``, wait (bounded) for the exit and the last output; returns the exit code."""
        self.process.send_signal(signum)
        code = self.process.wait(STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(STOP_TIMEOUT)
        return code

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.stdout)

    @property
    def errors(self) -> str:
        with self._changed:
            return "\n".join(self.stderr)


@contextmanager
def serving(*args: str) -> Iterator[tuple[Served, int]]:
    """Start the server on a free port, wait for its startup line; always killed at the end."""
    port = free_port()
    served = Served("--port", str(port), *args)
    try:
        started = served.wait_for(LISTENING)
        assert started["where"].endswith(f":{port}")
        yield served, port
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(STOP_TIMEOUT)


def run_serve(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["-c", code] if code is not None else ["-m", "smtp_fsm.serve", *args]
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, encoding="utf-8",
                          env=_environment(), timeout=30, stdin=subprocess.DEVNULL)


def message(subject: str = "你好, serve", body: str = "first line\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Alice <{USER}@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def client_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def assert_clean_stop(served: Served, signum: int = signal.SIGINT, messages: int = 1) -> None:
    assert served.stop(signum) == 0
    assert "Traceback" not in served.errors, served.errors
    plural = "" if messages == 1 else "s"
    assert served.stdout[-1] == f"smtp-fsm serve: stopped after {messages} message{plural}"


# -- servers ---------------------------------------------------------------------------------


def test_prints_each_message_refuses_by_pattern_and_stops_on_ctrl_c() -> None:
    with serving("--refuse", "*@nowhere.test", "--pipelining") as (served, port):
        assert served.stdout[-1] == (f"smtp-fsm serve: listening on 127.0.0.1:{port} "
                                     "(SMTP, PIPELINING, refusing *@nowhere.test); press Ctrl-C to stop")
        body = "".join(f"line {n}\n" for n in range(1, 16)) + "\x1b[31m no escapes reach the terminal\n"
        with SMTPClient("127.0.0.1", port, timeout=10) as client:
            assert client.capabilities.pipelining
            assert not client.capabilities.auth_mechanisms  # no --auth: AUTH is not offered
            result = client.send_message(message(body=body), to_addrs=["bob@example.org", "X@NoWhere.test"])
            with pytest.raises(RecipientsRefused) as refused:
                client.send_message(message(), to_addrs=["y@nowhere.test"])
        assert list(result.accepted) == ["bob@example.org"]
        assert result.refused["X@NoWhere.test"].code == 550
        assert "5.1.1" in str(result.refused["X@NoWhere.test"])
        assert refused.value.reply.code == 550
        served.wait_for(r"^--- end of message 1 ---$")
        output = served.output
        assert re.search(r"^--- message 1 from 127\.0\.0\.1:\d+ \(plain text, \d+ octets\) ---$", output, re.M)
        assert "MAIL FROM:<alice@example.org>" in output
        assert "RCPT TO:<bob@example.org>" in output
        assert "nowhere" not in output.lower().split("--- message 1", 1)[1]  # refused: not in the envelope
        assert "\nSubject: 你好, serve\n" in output
        assert "\nline 1\n" in output and "\nline 10\n" in output and "line 11" not in output
        assert "[... 6 more lines]" in output
        assert "\x1b" not in output
        assert_clean_stop(served)


def test_maildir_stores_each_message_and_sigterm_stops(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()  # an existing empty directory gets tmp/new/cur too
    with serving("--maildir", str(box)) as (served, port):
        with SMTPClient("127.0.0.1", port, timeout=10) as client:
            client.send_message(message(subject="one"))
            client.send_message(message(subject="two"))
        stored = served.wait_for(r"^message 2 from 127\.0\.0\.1:\d+ \(.*\): stored as (?P<path>.+)$")
        assert Path(stored["path"]).parent == box / "new"
        assert_clean_stop(served, signal.SIGTERM, messages=2)
    assert all((box / sub).is_dir() for sub in ("tmp", "new", "cur"))
    assert len(list((box / "new").iterdir())) == 2
    messages = list(mailbox.Maildir(box, create=False))
    assert sorted(str(msg["Subject"]) for msg in messages) == ["one", "two"]
    assert messages[0]["Return-Path"] == "<alice@example.org>"
    assert messages[0]["Delivered-To"] == "bob@example.org"
    assert b"\r\n" not in Path(stored["path"]).read_bytes()  # Unix line ends, as Maildir readers expect


def test_auth_plain_login_cram_md5_right_and_wrong() -> None:
    with serving("--auth", f"{USER}:{PASSWORD}", "--auth", "bob:other") as (served, port):
        assert "AUTH required: PLAIN LOGIN CRAM-MD5" in served.stdout[-1]
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            with SMTPClient("127.0.0.1", port, username=USER, password=PASSWORD, auth_mechanism=mechanism,
                            timeout=10) as client:
                assert sorted(client.capabilities.auth_mechanisms) == ["CRAM-MD5", "LOGIN", "PLAIN"]
                assert client.send_message(message(subject=mechanism)).ok
        with pytest.raises(AuthenticationError):
            SMTPClient("127.0.0.1", port, username=USER, password="wrong", timeout=10).connect()
        with SMTPClient("127.0.0.1", port, timeout=10) as client, pytest.raises(SenderRefused) as refused:
            client.send_message(message())  # --auth makes a login required before MAIL
        assert refused.value.reply.code == 530
        served.wait_for(r"^--- end of message 3 ---$")
        assert served.output.count("(plain text, authenticated as alice,") == 3
        assert_clean_stop(served, messages=3)


def test_starttls_required_with_the_printed_ca_file() -> None:
    with serving("--starttls", "--auth", f"{USER}:{PASSWORD}") as (served, port):
        ca_file = served.wait_for(CA_LINE)["path"]
        assert f"--cafile {ca_file}" in served.output  # the ready-to-copy send command
        with SMTPClient("127.0.0.1", port, starttls="required", tls_context=client_context(ca_file),
                        username=USER, password=PASSWORD, timeout=10) as client:
            assert client.send_message(message()).ok
        served.wait_for(r"\(STARTTLS, authenticated as alice, \d+ octets\) ---$")
        assert_clean_stop(served)
    assert not Path(ca_file).exists()  # a CA file of its own is removed at the end


def test_implicit_tls_keeps_the_ca_file_asked_for(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    with serving("--tls", "--ca-out", str(ca_file), "--auth", f"{USER}:{PASSWORD}") as (served, port):
        assert served.wait_for(CA_LINE)["path"] == str(ca_file)
        assert "(SMTP, implicit TLS, AUTH required" in served.stdout[-1]
        with SMTPClient("127.0.0.1", port, tls=True, tls_context=client_context(str(ca_file)),
                        username=USER, password=PASSWORD, timeout=10) as client:
            assert client.send_message(message()).ok
        served.wait_for(r"\(TLS, authenticated as alice, \d+ octets\) ---$")
        assert_clean_stop(served)
    assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_lmtp_replies_per_recipient() -> None:
    with serving("--lmtp", "--refuse", "nobody@*") as (served, port):
        with SMTPClient("127.0.0.1", port, lmtp=True, timeout=10) as client:
            result = client.send_message(message(), to_addrs=["bob@example.org", "carol@example.org",
                                                              "nobody@example.org"])
        assert result.ok
        assert sorted(result.delivery) == ["bob@example.org", "carol@example.org"]
        assert all(reply.code == 250 for reply in result.delivery.values())
        assert "<carol@example.org> delivered as 1" in str(result.delivery["carol@example.org"])
        assert result.refused["nobody@example.org"].code == 550
        served.wait_for(r"^RCPT TO:<carol@example.org>$")
        assert_clean_stop(served)


# -- refusals before serving -------------------------------------------------------------------


def test_a_non_loopback_address_needs_public() -> None:
    done = run_serve("--listen", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("smtp-fsm serve: error: 0.0.0.0 is not a loopback address") and "--public" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--auth", "alice"], "USER:PASSWORD"),
    (["--ca-out", "ca.pem"], "--ca-out needs --starttls or --tls"),
    (["--listen", "127.0.0.1:2600", "--port", "2601"], "two ports"),
    (["--starttls", "--tls"], "not allowed with argument"),
    (["--port", "70000"], "0-65535"),
])
def test_bad_arguments_exit_2(args: list[str], expected: str) -> None:
    done = run_serve(*args)
    assert done.returncode == 2
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_a_busy_port_exits_2_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        started = time.monotonic()
        done = run_serve("--port", str(busy.getsockname()[1]))
    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 4  # not aiosmtpd's 5-second start timeout


@pytest.mark.parametrize(("module", "args", "hint"), [
    ("aiosmtpd", "['--port', '0']", "pip install 'smtp_fsm[server]'"),
    ("trustme", "['--port', '0', '--tls']", "pip install 'smtp_fsm[server]'"),
])
def test_a_missing_package_is_named_in_one_line(module: str, args: str, hint: str) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from smtp_fsm.serve import main\nraise SystemExit(main({args}))")
    done = run_serve(code=code)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert module in line and hint in line


def test_importing_the_command_line_loads_no_server_packages() -> None:
    code = ("import sys, smtp_fsm.cli, smtp_fsm.serve\n"
            "print(sorted(name for name in ('aiosmtpd', 'trustme') if name in sys.modules))")
    done = run_serve(code=code)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# -- the sub-parser --------------------------------------------------------------------------


def test_add_serve_adds_a_subcommand_like_the_others() -> None:
    parser = argparse.ArgumentParser(prog="smtp-fsm")
    add_serve(parser.add_subparsers())
    args = parser.parse_args(["serve", "--auth", "u:p:q", "--refuse", "a*", "--refuse", "b*"])
    assert args.func is cmd_serve
    assert args.command_parser.prog == "smtp-fsm serve"
    assert args.auth == [("u", "p:q")]
    assert args.refuse == ["a*", "b*"]
    assert args.listen == ("127.0.0.1", None) and args.port is None and not args.public
    assert DEFAULT_PORT == 2525


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", ("127.0.0.1", None)),
    ("localhost:2526", ("localhost", 2526)),
    ("[::1]:2527", ("::1", 2527)),
    ("::1", ("::1", None)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
])
def test_listen_addresses(text: str, expected: tuple[str, int | None]) -> None:
    assert _listen(text) == expected


@pytest.mark.parametrize("text", ["", ":25", "host:port", "[::1", "[::1]x", "host:65536"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _listen(text)


# -- the handler -----------------------------------------------------------------------------


@pytest.mark.parametrize("lmtp", [False, True])
def test_a_message_that_cannot_be_stored_gets_451(lmtp: bool, capsys: pytest.CaptureFixture[str]) -> None:
    def full_disk(arrival: Arrival) -> None:
        raise OSError(28, "No space left on device")

    handler = ServeHandler(RecordingHandler(), ServeConfig(lmtp=lmtp), full_disk)
    envelope = SimpleNamespace(original_content=b"Subject: x\r\n\r\nhi\r\n", content=None, mail_from="a@example.org",
                               rcpt_tos=["b@example.org", "c@example.org"], mail_options=[], smtp_utf8=False)
    session = SimpleNamespace(auth_data=None, ssl=None, peer=("127.0.0.1", 5000))
    server: Any = None  # the handler does not use it
    reply = asyncio.run(handler.handle_DATA(server, session, envelope))
    if lmtp:  # one reply per recipient (RFC 2033)
        assert reply.split("\r\n") == [f"451 4.3.0 <{rcpt}> cannot store the message now, try again later"
                                        for rcpt in envelope.rcpt_tos]
    else:
        assert reply == "451 4.3.0 cannot store the message now, try again later"
    assert "cannot store message 1: [Errno 28] No space left on device" in capsys.readouterr().err
