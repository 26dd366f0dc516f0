"""The smtp-fsm command line, run as a subprocess against aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import pty
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from smtp_fsm import cli, diagram
from smtp_fsm.errors import (
    AuthenticationError,
    DataRefused,
    LocalProtocolError,
    RecipientsRefused,
    RemoteProtocolError,
    SenderRefused,
    ServerDisconnected,
    SMTPConnectError,
    SMTPError,
    SMTPReplyError,
    SMTPTimeout,
    TLSError,
    TLSUnavailable,
)
from smtp_fsm.message import dot_stuff, payload_from_message
from smtp_fsm.replies import Reply
from smtp_fsm.testing import LocalSMTPServer, RecordingHandler
from smtp_fsm.testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

SENDER = "alice@example.org"
RCPT = "bob@example.org"
USER, PASSWORD = "alice", "correct horse battery staple"
PASSWORD_VAR = "SMTP_FSM_TEST_PASSWORD"


def run_cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m smtp_fsm ARGS`` with a bounded run time; stdout and stderr as bytes."""
    environment = {key: value for key, value in os.environ.items() if key != PASSWORD_VAR}
    environment.update({"PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "smtp_fsm", *args],
        input=stdin if stdin is not None else b"", capture_output=True, timeout=60, env=environment, cwd=cwd,
        start_new_session=True,  # no controlling terminal: a password prompt can never reach the real tty
    )


def address(server: LocalSMTPServer) -> str:
    return f"{server.host}:{server.port}"


def text(data: bytes) -> str:
    return data.decode("utf-8")


@pytest.fixture
def server() -> Iterator[LocalSMTPServer]:
    handler = RecordingHandler(refuse={"nobody@example.org": "550 5.1.1 no such user",
                                       "later@example.org": "450 4.2.1 mailbox busy"})
    with LocalSMTPServer(handler=handler) as running:
        yield running


# -- sending -------------------------------------------------------------------------------


def test_plain_send(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT,
                   "--subject", "plain", "--body", "hello\nworld")
    assert done.returncode == cli.EXIT_OK, done.stderr
    out = text(done.stdout)
    assert f"accepted  <{RCPT}>: 250" in out
    assert "sent to 1 of 1 recipient(s): 250 2.0.0 OK queued as 1" in out
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == (SENDER, (RCPT,))
    msg = received.message
    assert (msg["From"], msg["To"], msg["Subject"]) == (SENDER, RCPT, "plain")
    assert msg["Date"] and msg["Message-ID"]
    assert msg.get_content().replace("\r\n", "\n") == "hello\nworld\n"


def test_attachments_arrive_with_their_mime_types(server: LocalSMTPServer, tmp_path: Path) -> None:
    files = {"report.pdf": b"%PDF-1.4\n\x00\xff binary", "data.csv": b"a,b\n1,2\n", "photo.png": b"\x89PNG\r\n\x1a\n",
             "blob": bytes(range(256))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    attach = [arg for name in files for arg in ("--attach", str(tmp_path / name))]
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT, "--body", "see attached",
                   *attach)
    assert done.returncode == cli.EXIT_OK, done.stderr
    msg = server.messages[0].message
    parts = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(parts) == set(files)
    assert parts["report.pdf"].get_content_type() == "application/pdf"
    assert parts["data.csv"].get_content_type() == "text/csv"
    assert parts["photo.png"].get_content_type() == "image/png"
    assert parts["blob"].get_content_type() == "application/octet-stream"
    for name, data in files.items():
        assert parts[name].get_payload(decode=True) == data
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content() == "see attached\r\n"


def test_chinese_subject_body_and_names_arrive_intact(server: LocalSMTPServer) -> None:
    subject, body = "你好，SMTP 状态机！", "我爱计算机网络！\nI love computer network!\n第三行"
    done = run_cli("send", "--server", address(server), "--from", f"张三 <{SENDER}>", "--to", f"李四 <{RCPT}>",
                   "--subject", subject, "--body", body)
    assert done.returncode == cli.EXIT_OK, done.stderr
    [received] = server.messages
    assert received.rcpt_tos == (RCPT,)
    msg = received.message
    assert msg["Subject"] == subject
    assert msg["From"].addresses[0].display_name == "张三"
    assert msg["To"].addresses[0].display_name == "李四"
    assert msg.get_content() == body.replace("\n", "\r\n") + "\r\n"


def test_bcc_is_in_the_envelope_and_not_in_the_headers(server: LocalSMTPServer) -> None:
    hidden = "hidden@example.org"
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT, "--cc", "carol@example.org",
                   "--bcc", hidden, "--body", "x")
    assert done.returncode == cli.EXIT_OK, done.stderr
    [received] = server.messages
    assert set(received.rcpt_tos) == {RCPT, "carol@example.org", hidden}
    assert hidden.encode() not in received.content
    assert b"\nBcc:" not in received.content and not received.content.startswith(b"Bcc:")
    assert received.message["Cc"] == "carol@example.org"


def test_a_refused_recipient_gives_exit_1_and_its_reply(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT,
                   "--to", "nobody@example.org", "--to", "later@example.org", "--body", "x")
    assert done.returncode == cli.EXIT_SOME_REFUSED, done.stderr
    out = text(done.stdout)
    assert f"accepted  <{RCPT}>: 250" in out
    assert "refused   <nobody@example.org>: 550 5.1.1 no such user" in out
    assert "refused   <later@example.org>: 450 4.2.1 mailbox busy" in out
    assert "sent to 1 of 3 recipient(s)" in out
    assert server.messages[0].rcpt_tos == (RCPT,)


def test_every_recipient_refused_gives_exit_5(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", "nobody@example.org", "--body", "x")
    assert done.returncode == cli.EXIT_REFUSED
    assert "refused   <nobody@example.org>: 550 5.1.1 no such user" in text(done.stdout)
    assert "message refused" in text(done.stderr)
    assert b"Traceback" not in done.stderr
    assert server.messages == []


def test_refused_data_gives_exit_5() -> None:
    with LocalSMTPServer(handler=RecordingHandler(data_reply="554 5.6.0 content rejected")) as refusing:
        done = run_cli("send", "--server", address(refusing), "--from", SENDER, "--to", RCPT, "--body", "x")
    assert done.returncode == cli.EXIT_REFUSED
    assert text(done.stderr).startswith("smtp-fsm: message refused: 554 5.6.0 content rejected")


def test_quiet_prints_nothing_on_success(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--quiet", "--server", address(server), "--from", SENDER, "--to", RCPT, "--body", "x")
    assert (done.returncode, done.stdout, done.stderr) == (cli.EXIT_OK, b"", b"")


def test_quiet_still_reports_refused_recipients_on_stderr(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--quiet", "--server", address(server), "--from", SENDER, "--to", RCPT,
                   "--to", "nobody@example.org", "--body", "x")
    assert (done.returncode, done.stdout) == (cli.EXIT_SOME_REFUSED, b"")
    assert text(done.stderr) == "smtp-fsm: refused <nobody@example.org>: 550 5.1.1 no such user\n"
    done = run_cli("send", "--quiet", "--server", address(server), "--from", SENDER, "--to", "nobody@example.org",
                   "--body", "x")
    assert done.returncode == cli.EXIT_REFUSED and done.stdout == b""
    lines = text(done.stderr).splitlines()
    assert lines[0] == "smtp-fsm: refused <nobody@example.org>: 550 5.1.1 no such user"
    assert lines[-1].startswith("smtp-fsm: message refused")


def test_message_from_stdin_is_sent_as_is(server: LocalSMTPServer) -> None:
    raw = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: ready-made\r\n"
           b"X-Custom: kept\r\n\r\nfirst line\r\n.a dot line\r\n..two dots\r\nlast\r\n")
    done = run_cli("send", "--server", address(server), "--message", "-", stdin=raw)
    assert done.returncode == cli.EXIT_OK, done.stderr
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == (SENDER, (RCPT,))
    assert received.content == raw


def test_message_file_with_an_explicit_envelope(server: LocalSMTPServer, tmp_path: Path) -> None:
    path = tmp_path / "ready.eml"
    path.write_bytes(b"From: someone@example.org\nTo: list@example.org\nSubject: s\n\nbody\n")
    done = run_cli("send", "--server", address(server), "--message", str(path), "--from", "bounce@example.org",
                   "--to", RCPT)
    assert done.returncode == cli.EXIT_OK, done.stderr
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == ("bounce@example.org", (RCPT,))
    assert received.content == b"From: someone@example.org\r\nTo: list@example.org\r\nSubject: s\r\n\r\nbody\r\n"


def test_lmtp_reports_each_delivery() -> None:
    handler = RecordingHandler(lmtp_refuse={"full@example.org": "552 5.2.2 mailbox full"})
    with LocalSMTPServer(handler=handler, lmtp=True) as lmtp:
        done = run_cli("send", "--lmtp", "--server", address(lmtp), "--from", SENDER, "--to", RCPT,
                       "--to", "full@example.org", "--body", "x")
    assert done.returncode == cli.EXIT_SOME_REFUSED, done.stderr
    out = text(done.stdout)
    assert f"accepted  <{RCPT}>: 250 2.0.0 <{RCPT}> delivered" in out
    assert "refused   <full@example.org>: 552 5.2.2 mailbox full" in out


def test_dsn_options_to_a_server_without_dsn_give_exit_5(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT, "--body", "x",
                   "--dsn-notify", "SUCCESS,FAILURE", "--dsn-ret", "hdrs")
    assert done.returncode == cli.EXIT_REFUSED
    assert "DSN" in text(done.stderr)
    assert server.messages == []


# -- TLS and authentication ------------------------------------------------------------------


@dataclass
class TLSFiles:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    cafile: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    cafile = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return TLSFiles(server_context, client_context, cafile)


@pytest.fixture
def auth_server(tls: TLSFiles) -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer(starttls_context=tls.server_context, credentials={USER: PASSWORD},
                         auth_required=True) as running:
        yield running


def test_starttls_with_auth(auth_server: LocalSMTPServer, tls: TLSFiles) -> None:
    done = run_cli("send", "--server", address(auth_server), "--starttls", "required", "--cafile", str(tls.cafile),
                   "--auth-user", USER, "--auth-password-env", PASSWORD_VAR, "--from", SENDER, "--to", RCPT,
                   "--body", "over TLS", env={PASSWORD_VAR: PASSWORD})
    assert done.returncode == cli.EXIT_OK, done.stderr
    [received] = auth_server.messages
    assert received.authenticated_as == USER
    assert received.peer_tls
    assert PASSWORD.encode() not in done.stdout + done.stderr


def test_password_from_a_file(auth_server: LocalSMTPServer, tls: TLSFiles, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    done = run_cli("send", "--server", address(auth_server), "--cafile", str(tls.cafile), "--auth-user", USER,
                   "--auth-password-file", str(secret), "--from", SENDER, "--to", RCPT, "--body", "x")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert auth_server.messages[0].authenticated_as == USER


def test_password_on_the_command_line_works_but_warns(auth_server: LocalSMTPServer, tls: TLSFiles) -> None:
    done = run_cli("send", "--server", address(auth_server), "--cafile", str(tls.cafile), "--auth-user", USER,
                   "--auth-password", PASSWORD, "--from", SENDER, "--to", RCPT, "--body", "x")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "warning" in text(done.stderr) and "--auth-password-env" in text(done.stderr)
    assert auth_server.messages[0].authenticated_as == USER


def test_password_prompt_without_a_terminal_reads_stdin(auth_server: LocalSMTPServer, tls: TLSFiles) -> None:
    done = run_cli("send", "--server", address(auth_server), "--cafile", str(tls.cafile), "--auth-user", USER,
                   "--from", SENDER, "--to", RCPT, "--body", "x", stdin=PASSWORD.encode() + b"\n")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert auth_server.messages[0].authenticated_as == USER


def test_no_password_at_all_is_a_usage_error(auth_server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", address(auth_server), "--auth-user", USER, "--from", SENDER, "--to", RCPT)
    assert done.returncode == cli.EXIT_USAGE
    assert b"no password given" in done.stderr and b"Traceback" not in done.stderr


def test_wrong_password_gives_exit_4(auth_server: LocalSMTPServer, tls: TLSFiles) -> None:
    done = run_cli("send", "--server", address(auth_server), "--cafile", str(tls.cafile), "--auth-user", USER,
                   "--auth-password-env", PASSWORD_VAR, "--from", SENDER, "--to", RCPT, "--body", "x",
                   env={PASSWORD_VAR: "wrong"})
    assert done.returncode == cli.EXIT_AUTH
    assert "authentication failed" in text(done.stderr)
    assert b"Traceback" not in done.stderr
    assert auth_server.messages == []


def test_untrusted_certificate_gives_exit_3(auth_server: LocalSMTPServer) -> None:
    # Without --cafile the test CA is not trusted: the handshake must fail, not fall back to clear text.
    done = run_cli("send", "--server", address(auth_server), "--starttls", "required", "--from", SENDER,
                   "--to", RCPT, "--body", "x")
    assert done.returncode == cli.EXIT_CONNECT
    assert "connection failed" in text(done.stderr)
    assert auth_server.messages == []


def test_trace_shows_states_and_masks_credentials(auth_server: LocalSMTPServer, tls: TLSFiles) -> None:
    # Written against the documented behaviour of smtp_fsm.trace.annotated_text (state names beside
    # the C:/S: lines, credentials shown as the MASK placeholder).
    done = run_cli("send", "--trace", "--server", address(auth_server), "--cafile", str(tls.cafile),
                   "--auth-user", USER, "--auth-password-env", PASSWORD_VAR, "--auth-mech", "PLAIN",
                   "--from", SENDER, "--to", RCPT, "--body", "x", env={PASSWORD_VAR: PASSWORD})
    assert done.returncode == cli.EXIT_OK, done.stderr
    out = text(done.stdout)
    for state in ("greeting", "starttls", "tls_handshake", "auth", "ready", "closed"):
        assert state in out
    assert "<credentials>" in out
    assert PASSWORD not in out
    assert "\x1b[" not in out  # not a terminal, NO_COLOR set: no colour
    assert out.rstrip().endswith("sent to 1 of 1 recipient(s): 250 2.0.0 OK queued as 1")


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """Run the command with stdout on a pseudo-terminal; what it printed there."""
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "smtp_fsm", *args], stdin=subprocess.DEVNULL, stdout=slave,
                          stderr=subprocess.PIPE, env=env, start_new_session=True) as process:
        os.close(slave)
        chunks = []
        for _ in range(10_000):  # bounded; ends when the child closes the terminal (EIO)
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    os.close(master)
    return b"".join(chunks)


@pytest.mark.parametrize("no_color", [False, True])
def test_trace_is_coloured_only_on_a_terminal_without_no_color(server: LocalSMTPServer, no_color: bool) -> None:
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    out = _run_on_a_terminal(["send", "--trace", "--server", address(server), "--from", SENDER, "--to", RCPT,
                              "--body", "x"], env)
    assert b"greeting" in out
    assert (b"\x1b[" in out) is not no_color


# -- connection failures and timeouts ------------------------------------------------------------


def test_nothing_listening_gives_exit_3() -> None:
    done = run_cli("send", "--server", f"127.0.0.1:{free_port()}", "--from", SENDER, "--to", RCPT, "--body", "x",
                   "--timeout", "10")
    assert done.returncode == cli.EXIT_CONNECT
    assert "connection failed" in text(done.stderr)
    assert b"Traceback" not in done.stderr


def test_a_silent_server_gives_exit_6() -> None:
    # The kernel completes the TCP handshake from the backlog; no greeting ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        done = run_cli("send", "--server", f"127.0.0.1:{port}", "--from", SENDER, "--to", RCPT, "--body", "x",
                       "--timeout", "0.5")
    assert done.returncode == cli.EXIT_PROTOCOL
    assert "timeout" in text(done.stderr)


class ScriptedServer:
    """One connection on 127.0.0.1: send each reply after reading a line; None closes instead."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = replies
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(30)
                reader = conn.makefile("rb")
                for index, reply in enumerate(self.replies):
                    if index:  # the first reply is the greeting; every later one answers a command
                        reader.readline(4096)
                    if reply is None:
                        return
                    conn.sendall(reply)
                reader.readline(4096)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(timeout=30)


@pytest.mark.parametrize(("replies", "expected"), [
    ([b"554 5.7.1 no service for you\r\n"], cli.EXIT_CONNECT),
    ([b"421 4.3.2 shutting down\r\n"], cli.EXIT_CONNECT),
    ([None], cli.EXIT_CONNECT),
    ([b"220 hi\r\n", b"250 hi\r\n", None], cli.EXIT_PROTOCOL),  # hangs up at MAIL
    ([b"220 hi\r\n", b"250 hi\r\n", b"250 ok\r\n", b"421 4.4.2 bye\r\n"], cli.EXIT_PROTOCOL),  # 421 at RCPT
    ([b"220 hi\r\n", b"HELLO?\r\n"], cli.EXIT_PROTOCOL),  # not SMTP
])
def test_server_failures_map_to_their_exit_codes(replies: list[bytes | None], expected: int) -> None:
    with ScriptedServer(replies) as scripted:
        done = run_cli("send", "--server", f"127.0.0.1:{scripted.port}", "--from", SENDER, "--to", RCPT,
                       "--body", "x", "--timeout", "10")
    assert done.returncode == expected, done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("mx.example.org", ("mx.example.org", None)),
    ("mx.example.org:587", ("mx.example.org", 587)),
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    ("[::1]:2525", ("::1", 2525)),
    ("[::1]", ("::1", None)),
    ("2001:db8::25", ("2001:db8::25", None)),
])
def test_server_argument_forms(value: str, expected: tuple[str, int | None]) -> None:
    assert cli.build_parser().parse_args(["send", "--server", value]).server == expected


@pytest.mark.parametrize(("error", "opening", "expected"), [
    (SMTPConnectError("refused"), True, cli.EXIT_CONNECT),
    (TLSError("bad certificate"), True, cli.EXIT_CONNECT),
    (TLSUnavailable(Reply(454, ("4.7.0 TLS not available",))), True, cli.EXIT_CONNECT),
    (ServerDisconnected("closed", None, "greeting"), True, cli.EXIT_CONNECT),
    (SMTPReplyError(Reply(554, ("no service",)), "server refused the session", "greeting"), True, cli.EXIT_CONNECT),
    (AuthenticationError(Reply(535, ("5.7.8 bad credentials",))), True, cli.EXIT_AUTH),
    (LocalProtocolError("refusing to send credentials in clear"), True, cli.EXIT_AUTH),
    (SenderRefused(Reply(553, ("no",)), SENDER), False, cli.EXIT_REFUSED),
    (RecipientsRefused({RCPT: Reply(550, ("no",))}), False, cli.EXIT_REFUSED),
    (DataRefused(Reply(554, ("no",))), False, cli.EXIT_REFUSED),
    (LocalProtocolError("message is larger than SIZE"), False, cli.EXIT_REFUSED),
    (RemoteProtocolError("garbage"), False, cli.EXIT_PROTOCOL),
    (SMTPTimeout("no reply"), False, cli.EXIT_PROTOCOL),
    (ServerDisconnected("closed", None, "envelope"), False, cli.EXIT_PROTOCOL),
    (SMTPReplyError(Reply(500, ("what?",)), "unexpected reply", "noop"), False, cli.EXIT_PROTOCOL),
])
def test_exit_code_mapping(error: Exception, opening: bool, expected: int) -> None:
    assert isinstance(error, SMTPError)
    assert cli.exit_code_for(error, opening) == expected


# -- dry run -------------------------------------------------------------------------------------


def _data_of_dry_run(stdout: bytes) -> tuple[list[str], bytes]:
    """The comment lines and the data that follows the '# data:' line."""
    head, marker, rest = stdout.partition(b"\n# data: ")
    assert marker, stdout
    data_line, _, data = rest.partition(b"\n")
    return [*head.decode().splitlines(), "# data: " + data_line.decode()], data


def test_dry_run_prints_the_exact_bytes_with_dot_stuffing(tmp_path: Path) -> None:
    body = ".starts with a dot\nmiddle\n..two dots\n.\nend without newline"
    date, message_id = "Mon, 01 Jan 2024 10:00:00 +0000", "<dry-run@example.org>"
    done = run_cli("send", "--dry-run", "--from", SENDER, "--to", RCPT, "--bcc", "hidden@example.org",
                   "--subject", "dots", "--header", f"Date: {date}", "--header", f"Message-ID: {message_id}",
                   "--body", body, cwd=tmp_path)
    assert done.returncode == cli.EXIT_OK, done.stderr
    comments, data = _data_of_dry_run(done.stdout)
    assert f"# envelope sender: <{SENDER}>" in comments
    assert f"# envelope recipient: <{RCPT}>" in comments
    assert "# envelope recipient: <hidden@example.org>" in comments

    # The same message, built here, through the engine's own normalisation and stuffing.
    msg = EmailMessage(policy=policy.default)
    msg["From"], msg["To"], msg["Bcc"], msg["Subject"] = SENDER, RCPT, "hidden@example.org", "dots"
    msg["Date"], msg["Message-ID"] = date, message_id
    msg.set_content(body)
    assert data == dot_stuff(payload_from_message(msg).content)
    assert f"{len(data)} octets" in comments[-1]

    # And independently of the engine: dot lines doubled, CRLF everywhere, one terminator, no Bcc.
    assert data.endswith(b"\r\nend without newline\r\n.\r\n")
    assert b"\r\n..starts with a dot\r\nmiddle\r\n...two dots\r\n..\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.count(b"\r\n.\r\n") == 1
    assert b"hidden@example.org" not in data


def test_dry_run_of_a_ready_message_normalises_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "bare-lf.eml"
    path.write_bytes(b"Subject: x\n\n.hidden\nline\r\n..two\rlast")
    done = run_cli("send", "--dry-run", "--message", str(path), "--from", SENDER, "--to", RCPT)
    assert done.returncode == cli.EXIT_OK, done.stderr
    _, data = _data_of_dry_run(done.stdout)
    assert data == b"Subject: x\r\n\r\n..hidden\r\nline\r\n...two\r\nlast\r\n.\r\n"


def test_dry_run_does_not_connect() -> None:
    # A server address nobody listens on: a dry run must not even try it.
    done = run_cli("send", "--dry-run", "--server", f"127.0.0.1:{free_port()}", "--from", SENDER, "--to", RCPT)
    assert done.returncode == cli.EXIT_OK, done.stderr


# -- usage errors and help -----------------------------------------------------------------------

_BASE = ("--from", SENDER, "--to", RCPT)


@pytest.mark.parametrize("args", [
    ("send", "--server", "127.0.0.1:99999", *_BASE),
    ("send", "--server", "[::1", *_BASE),
    ("send", "--server", "127.0.0.1", "--timeout", "soon", *_BASE),
    ("send", "--server", "127.0.0.1", "--timeout", "0", *_BASE),
    ("send", "--tls", *_BASE),  # no --server: each domain to its MX, and --tls speaks to one server
    ("send", "--mx-port", "0", *_BASE),
    ("send", "--server", "127.0.0.1", "--from", SENDER),  # no recipient
    ("send", "--server", "127.0.0.1", "--body-file", "/nonexistent/body.txt", *_BASE),
    ("send", "--server", "127.0.0.1", "--attach", "/nonexistent/file.pdf", *_BASE),
    ("send", "--server", "127.0.0.1", "--header", "no colon here", *_BASE),
    ("send", "--server", "127.0.0.1", "--header", "X-Evil: a\r\nBcc: victim@example.org", *_BASE),
    ("send", "--dry-run", "--from", SENDER, "--to", "bob@example.org\r\nRCPT TO:<x@example.org>"),
    ("send", "--dry-run", *_BASE, "--dsn-notify", "SOMETIMES"),
    ("send", "--dry-run", *_BASE, "--dsn-ret", "EVERYTHING"),
    ("send", "--server", "127.0.0.1", "--starttls", "maybe", *_BASE),
    ("send", "--server", "127.0.0.1", "--auth-user", USER, "--auth-password-env", "SMTP_FSM_UNSET_VARIABLE", *_BASE),
    ("send", "--server", "127.0.0.1", "--auth-password-env", PASSWORD_VAR, *_BASE),  # no --auth-user
    ("send", "--server", "127.0.0.1", "--auth-user", USER, "--auth-password", "x", "--auth-mech", "NTLM", *_BASE),
    ("send", "--server", "127.0.0.1", "--ehlo", "bad name", "--body", "x", *_BASE),
    ("send", "--server", "127.0.0.1", "--message", "-", "--subject", "clash"),
    ("send", "--server", "127.0.0.1", "--auth-user", USER, "--message", "-"),  # cannot prompt: stdin is the message
    ("send", "--no-such-option"),
    ("diagram", "--format", "png"),
    ("diagram", "--view", "no-such-view"),
    ("bogus",),
    (),
])
def test_bad_arguments_give_exit_2_and_no_traceback(args: tuple[str, ...], tmp_path: Path) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == cli.EXIT_USAGE, (done.stdout, done.stderr)
    err = text(done.stderr)
    assert "Traceback" not in err
    assert err.startswith("usage: smtp-fsm")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert done.stdout == b""


@pytest.mark.parametrize("command", [(), ("send",), ("demo",), ("diagram",), ("trace",)])
def test_help_has_examples_and_the_exit_code_table(command: tuple[str, ...]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0
    out = text(done.stdout)
    assert "examples:" in out
    assert ("exit codes:" in out) == (command in ((), ("send",)))
    for line in ("0  all recipients accepted", "1  some recipients refused", "2  usage error",
                 "3  connection or TLS failure", "4  authentication failed", "5  message refused",
                 "6  protocol error or timeout"):
        # The table is in send's help only; the top-level help points there, the others leave it out.
        assert (line in out) == (command == ("send",))


def test_send_help_lists_every_option() -> None:
    out = text(run_cli("send", "--help").stdout)
    for option in ("--server", "--from", "--to", "--cc", "--bcc", "--subject", "--body", "--body-file", "--attach",
                   "--header", "--message", "--ehlo", "--tls", "--starttls", "--cafile", "--auth-user",
                   "--auth-password-env", "--auth-password-file", "--auth-password", "--auth-mech",
                   "--allow-insecure-auth", "--timeout", "--lmtp", "--no-pipelining", "--dsn-notify", "--dsn-ret",
                   "--quiet", "--trace", "--dry-run"):
        assert option in out


# -- the other subcommands' wiring ---------------------------------------------------------------


def test_diagram_writes_the_chosen_formats_and_views(tmp_path: Path) -> None:
    done = run_cli("diagram", "--out", str(tmp_path / "d"), "--format", "dot,mmd", "--view", "lab")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert sorted(path.name for path in (tmp_path / "d").iterdir()) == ["lab.dot", "lab.mmd"]
    done = run_cli("diagram", "--out", str(tmp_path / "all"), "--format", "mmd")
    assert done.returncode == cli.EXIT_OK, done.stderr
    names = {path.name for path in (tmp_path / "all").iterdir()}
    assert "machine.mmd" in names and all(name.endswith(".mmd") for name in names)


def test_diagram_labels_speak_the_protocol_or_the_code(tmp_path: Path) -> None:
    done = run_cli("diagram", "--out", str(tmp_path / "p"), "--format", "dot", "--view", "setup")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "250 to EHLO, STARTTLS offered" in (tmp_path / "p" / "setup.dot").read_text(encoding="utf-8").replace(
        "\\n", " ")
    done = run_cli("diagram", "--out", str(tmp_path / "c"), "--format", "dot", "--view", "setup", "--labels", "code")
    assert done.returncode == cli.EXIT_OK, done.stderr
    code = (tmp_path / "c" / "setup.dot").read_text(encoding="utf-8")
    assert "ehlo_reply\\n" in code and "[positive, starttls_offered]" in code


def test_diagram_without_dot_uses_the_shipped_svgs_or_says_what_to_install(tmp_path: Path) -> None:
    """No Graphviz: today's SVGs come from the package; a render nobody shipped is exit 2 in one line."""
    no_dot = {"PATH": str(tmp_path / "empty")}
    done = run_cli("diagram", "--out", str(tmp_path / "svg"), "--format", "svg", env=no_dot)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert sorted(p.name for p in (tmp_path / "svg").iterdir()) == sorted(f"{v}.svg" for v in diagram.VIEWS)
    assert (tmp_path / "svg" / "lab.svg").read_bytes() == (ROOT / "diagrams" / "lab.svg").read_bytes()
    refused = run_cli("diagram", "--out", str(tmp_path / "code"), "--format", "svg", "--labels", "code", env=no_dot)
    assert refused.returncode == cli.EXIT_USAGE
    assert len(refused.stderr.splitlines()) == 1 and b"graphviz" in refused.stderr.lower()
    assert b"Traceback" not in refused.stderr and not list((tmp_path / "code").glob("*"))


def test_demo_runs(tmp_path: Path) -> None:
    done = run_cli("demo", "--no-color", cwd=tmp_path)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "greeting" in text(done.stdout)
    assert "\x1b[" not in text(done.stdout)


def test_saved_trace_prints_and_becomes_a_stepper(server: LocalSMTPServer, tmp_path: Path) -> None:
    saved = tmp_path / "session.jsonl"
    done = run_cli("send", "--server", address(server), "--from", SENDER, "--to", RCPT, "--body", "x",
                   "--save-trace", str(saved))
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "greeting" not in text(done.stdout)  # saved, not printed
    shown = run_cli("trace", str(saved))
    assert shown.returncode == cli.EXIT_OK, shown.stderr
    assert "greeting" in text(shown.stdout) and f"MAIL FROM:<{SENDER}>" in text(shown.stdout)
    page = tmp_path / "page.html"
    made = run_cli("trace", str(saved), "--html", str(page), "--title", "CLI test")
    assert made.returncode == cli.EXIT_OK, made.stderr
    assert "CLI test" in page.read_text(encoding="utf-8")
    # without Graphviz the page takes the machine's SVG shipped in the package
    bare = tmp_path / "bare.html"
    made = run_cli("trace", str(saved), "--html", str(bare), env={"PATH": str(tmp_path / "empty")})
    assert made.returncode == cli.EXIT_OK, made.stderr
    assert 'id="setup/view&#45;setup" class="graph"' in bare.read_text(encoding="utf-8")  # (default: pages)
    made = run_cli("trace", str(saved), "--html", str(bare), "--view", "machine", env={"PATH": str(tmp_path / "e")})
    assert made.returncode == cli.EXIT_OK, made.stderr
    assert 'id="machine/view&#45;machine" class="graph"' in bare.read_text(encoding="utf-8")
    refused = run_cli("trace", str(saved), "--html", str(bare), "--view", "slides")
    assert refused.returncode == cli.EXIT_USAGE and b"invalid choice: 'slides'" in refused.stderr


def test_a_stepper_page_that_cannot_be_written_is_said_before_the_demo_runs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = run_cli("demo", "--no-color", "--html", str(tmp_path / "file" / "page.html"), cwd=tmp_path)
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    assert b"cannot write" in done.stderr and b"Traceback" not in done.stderr
    assert done.stdout == b""  # no session ran


def test_the_command_line_offers_the_stepper_views() -> None:
    from smtp_fsm.stepper import STEPPER_VIEWS

    assert cli._STEPPER_VIEWS == STEPPER_VIEWS


@pytest.mark.parametrize("content", [None, b"{not json\n", b'{"state_before": "greeting"}\n'])
def test_an_unreadable_trace_is_a_usage_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "trace.jsonl"
    if content is not None:
        path.write_bytes(content)
    done = run_cli("trace", str(path))
    assert done.returncode == cli.EXIT_USAGE
    assert b"Traceback" not in done.stderr
    assert b"error: cannot load trace" in done.stderr


def test_a_stepper_page_without_dot_for_a_changed_table_is_exit_2_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No Graphviz and no shipped SVG of today's table (here: none matches): one line, exit 2, no traceback."""
    from smtp_fsm import diagram
    from smtp_fsm.trace import dump_jsonl

    saved = tmp_path / "session.jsonl"
    dump_jsonl([], saved)
    monkeypatch.setattr(diagram, "svg_available", lambda: False)
    monkeypatch.setattr(diagram, "committed_svg", lambda view, labels="protocol": None)
    assert cli.main(["trace", str(saved), "--html", str(tmp_path / "page.html")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "graphviz" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "page.html").exists()
    # the demo finds out before it runs a session: nothing is sent, nothing printed but the one line
    assert cli.main(["demo", "--no-color", "--html", str(tmp_path / "demo.html")]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "graphviz" in err.lower()
    assert not (tmp_path / "demo.html").exists()
