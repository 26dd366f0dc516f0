"""examples/memory_bio.py, run against real local servers: delivery over STARTTLS with the socket never
wrapped, a refused certificate, a silent server, and the example run as a script."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from example_helpers import SILENT_AFTER_STARTTLS, RecordingSession, load_example, record_sessions

import smtp_fsm
from smtp_fsm.testing.servers import LocalSMTPServer, TestTLS, make_test_tls

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "memory_bio.py"
MESSAGE = b"Subject: bio test\r\n\r\nencrypted by an SSLObject, carried by a plain socket\r\n"

example = load_example("memory_bio")


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSession]:
    return record_sessions(monkeypatch)


@pytest.fixture
def no_wrapped_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example must never wrap its socket (the server's side, asyncio, uses wrap_bio too)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("SSLContext.wrap_socket called: the socket was wrapped")

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", refuse)


@pytest.fixture(scope="module")
def tls() -> TestTLS:
    return make_test_tls("127.0.0.1")


def run_send(host: str, port: int, context: ssl.SSLContext, timeout: float = 10.0) -> smtp_fsm.SendResult:
    result: smtp_fsm.SendResult = example.send(host, port, "a@example.org", ["b@example.org"], MESSAGE, context,
                                                timeout=timeout)
    return result


@pytest.mark.usefixtures("no_wrapped_sockets")
def test_sends_over_starttls_through_memory_bios(tls: TestTLS, recording: list[RecordingSession]) -> None:
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        result = run_send(server.host, server.port, tls.client_context)
        assert result.ok and result.outcome is smtp_fsm.Outcome.DELIVERED and result.error is None
        (received,) = server.messages
    assert received.peer_tls
    assert received.mail_from == "a@example.org" and received.rcpt_tos == ("b@example.org",)
    assert received.message["Subject"] == "bio test"
    assert "carried by a plain socket" in str(received.message.get_payload())
    (session,) = recording
    assert session.options["starttls"] == "required"
    assert session.kinds() == [smtp_fsm.StartTLS, smtp_fsm.SessionReady, smtp_fsm.MessageSent, smtp_fsm.Closed]
    (ready,) = [item for item in session.seen if isinstance(item, smtp_fsm.SessionReady)]
    assert ready.encrypted and "STARTTLS" not in ready.capabilities  # the second EHLO, over TLS
    closed = session.seen[-1]
    assert isinstance(closed, smtp_fsm.Closed) and closed.error is None
    assert closed.reply is not None and closed.reply.code == 221  # the 221 came through the SSLObject


@pytest.mark.usefixtures("no_wrapped_sockets")
def test_a_certificate_not_trusted_ends_with_a_tls_error_and_nothing_sent(
        tls: TestTLS, recording: list[RecordingSession]) -> None:
    untrusting = ssl.create_default_context()  # the test CA is not in it: the handshake fails
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        result = run_send(server.host, server.port, untrusting)
        assert result.outcome is smtp_fsm.Outcome.NOT_SENT and not result.ok
        assert isinstance(result.error, smtp_fsm.TLSError)
        assert isinstance(result.error.__cause__, ssl.SSLCertVerificationError)
        assert server.messages == []
    (session,) = recording
    assert session.kinds() == [smtp_fsm.StartTLS, smtp_fsm.MessageSent, smtp_fsm.TLSError, smtp_fsm.Closed]
    assert [item for item in session.seen if isinstance(item, smtp_fsm.SMTPError)] == [result.error]  # once
    closed = session.seen[-1]
    assert isinstance(closed, smtp_fsm.Closed) and closed.error is result.error


def test_a_server_that_never_greets_times_out(recording: list[RecordingSession]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts: the connect still succeeds
        host, port = silent.getsockname()[:2]
        started = time.monotonic()
        result = run_send(host, port, ssl.create_default_context(), timeout=0.5)
        waited = time.monotonic() - started
    assert 0.4 <= waited < 5
    assert result.outcome is smtp_fsm.Outcome.NOT_SENT
    assert isinstance(result.error, smtp_fsm.SMTPTimeout) and isinstance(result.error.__cause__, TimeoutError)
    (session,) = recording
    assert session.kinds() == [smtp_fsm.MessageSent, smtp_fsm.SMTPTimeout, smtp_fsm.Closed]


def test_a_handshake_that_never_finishes_times_out(
        scripted_smtp_server: Any, tls: TestTLS, recording: list[RecordingSession]) -> None:
    server = scripted_smtp_server(SILENT_AFTER_STARTTLS, check=False)  # (the ClientHello is not in its script)
    started = time.monotonic()
    result = run_send(server.host, server.port, tls.client_context, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 5
    # close(TimeoutError) makes an SMTPTimeout, the handshake's too, chained from it.
    assert result.outcome is smtp_fsm.Outcome.NOT_SENT
    assert isinstance(result.error, smtp_fsm.SMTPTimeout) and "the TLS handshake" in str(result.error)
    assert isinstance(result.error.__cause__, TimeoutError)
    (session,) = recording
    assert session.kinds() == [smtp_fsm.StartTLS, smtp_fsm.MessageSent, smtp_fsm.TLSHandshakeTimeout, smtp_fsm.Closed]


def test_the_example_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "received 'memory BIO' from alice@example.org to bob@example.org; STARTTLS: True",
        "outcome: delivered",
    ]
