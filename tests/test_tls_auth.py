"""STARTTLS, implicit TLS and AUTH through both drivers against aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from drivers import DRIVERS, make_client

import smtp_fsm
from smtp_fsm.testing.servers import LocalSMTPServer, RecordingHandler, TestTLS, make_test_tls

both = pytest.mark.parametrize("kind", sorted(DRIVERS))
USERS = {"alice@example.test": "correct horse", "bob@example.test": "ya29.token-for-bob"}
MESSAGE = b"Subject: tls\r\n\r\nover TLS\r\n"


@pytest.fixture(scope="module")
def tls() -> TestTLS:
    return make_test_tls("127.0.0.1", "localhost")


@pytest.fixture
def starttls_server(tls: TestTLS) -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True, credentials=USERS,
                         auth_required=True) as server:
        yield server


@both
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
def test_starttls_then_auth_with_each_mechanism(kind: str, mechanism: str, tls: TestTLS,
                                                starttls_server: LocalSMTPServer) -> None:
    user = "bob@example.test" if mechanism == "XOAUTH2" else "alice@example.test"
    secret = {"oauth_token": USERS[user]} if mechanism == "XOAUTH2" else {"password": USERS[user]}
    with make_client(kind, starttls_server.host, starttls_server.port, timeout=10, tls_context=tls.client_context,
                     starttls="required", username=user, auth_mechanism=mechanism, trace=True, **secret) as client:
        assert client.encrypted and client.ready is not None and client.ready.authenticated_as == user
        assert client.ready.encrypted
        client.sendmail(user, ["carol@example.test"], MESSAGE)
        trace = client.trace
    (received,) = starttls_server.messages
    assert received.peer_tls
    assert received.authenticated_as == user
    # EHLO again after TLS (RFC 3207 §4.2), and no credential in the trace.
    assert [step.sent for step in trace].count(b"EHLO [127.0.0.1]\r\n") == 2
    everything = b"".join(step.sent for step in trace) + repr(trace).encode()
    for value in USERS.values():
        assert value.encode() not in everything
    assert b"<credentials>" in everything or mechanism == "CRAM-MD5"


@both
def test_strongest_mechanism_chosen_by_default(kind: str, tls: TestTLS, starttls_server: LocalSMTPServer) -> None:
    with make_client(kind, starttls_server.host, starttls_server.port, timeout=10, tls_context=tls.client_context,
                     username="alice@example.test", password=USERS["alice@example.test"], trace=True) as client:
        assert [step.sent.split()[1] for step in client.trace if step.sent.startswith(b"AUTH ")] == [b"CRAM-MD5"]


@both
def test_implicit_tls(kind: str, tls: TestTLS) -> None:
    # aiosmtpd only counts STARTTLS as TLS for its AUTH rule, so it must be told AUTH is fine here.
    with LocalSMTPServer(implicit_tls_context=tls.server_context, credentials=USERS, auth_require_tls=False) as server:
        with make_client(kind, server.host, server.port, tls=True, tls_context=tls.client_context, timeout=10,
                         username="alice@example.test", password=USERS["alice@example.test"]) as client:
            assert not client.capabilities.starttls and client.encrypted
            client.sendmail("alice@example.test", ["carol@example.test"], MESSAGE)
        assert server.messages[0].authenticated_as == "alice@example.test"


@both
def test_wrong_password_is_535_and_closes_cleanly(kind: str, tls: TestTLS, starttls_server: LocalSMTPServer) -> None:
    client = make_client(kind, starttls_server.host, starttls_server.port, timeout=10, tls_context=tls.client_context,
                         username="alice@example.test", password="wrong", auth_mechanism="PLAIN")
    with pytest.raises(smtp_fsm.AuthenticationError) as info:
        client.__enter__()
    assert info.value.code == 535
    assert "wrong" not in str(info.value)
    assert client.session.state in ("closed", "failed", "quit")
    assert starttls_server.messages == []


@both
def test_untrusted_certificate_fails_and_nothing_is_sent_after(kind: str, starttls_server: LocalSMTPServer) -> None:
    untrusted = ssl.create_default_context()  # does not know the test CA
    client = make_client(kind, starttls_server.host, starttls_server.port, timeout=10, tls_context=untrusted,
                         username="alice@example.test", password=USERS["alice@example.test"], trace=True)
    with pytest.raises(smtp_fsm.TLSError) as info, client:
        pass
    assert isinstance(info.value.__cause__, ssl.SSLError)
    assert starttls_server.handler.commands == ["EHLO [127.0.0.1]"]  # no EHLO, AUTH or MAIL after the handshake
    # The engine ended with the same error (the life cycle's "TLS handshake failed" row), and its trace says so.
    assert client.session.state == "failed"
    with pytest.raises(smtp_fsm.TLSError) as engine:
        client.session.next_event()  # the engine raises it once too: the driver raised it without asking
    assert engine.value is info.value
    closed = client.session.next_event()
    assert isinstance(closed, smtp_fsm.Closed) and closed.error is info.value
    assert client.trace[-1].note == "abandoned by the caller" and client.trace[-1].state_after == "failed"


@both
def test_wrong_hostname_fails_verification(kind: str, tls: TestTLS, starttls_server: LocalSMTPServer) -> None:
    with pytest.raises(smtp_fsm.TLSError), make_client(
        kind, starttls_server.host, starttls_server.port, timeout=10, tls_context=tls.client_context,
        server_hostname="mail.other.test",
    ):
        pass
    assert starttls_server.handler.commands == ["EHLO [127.0.0.1]"]


@both
def test_required_starttls_not_offered_sends_no_auth_or_mail(kind: str) -> None:
    with LocalSMTPServer(credentials=USERS, auth_require_tls=False) as server:
        with pytest.raises(smtp_fsm.TLSUnavailable), make_client(
            kind, server.host, server.port, timeout=10, starttls="required",
            username="alice@example.test", password=USERS["alice@example.test"],
        ) as client:
            client.sendmail("alice@example.test", ["b@example.test"], MESSAGE)
        assert server.handler.commands == ["EHLO [127.0.0.1]"]
        assert server.messages == []


@both
def test_sender_must_match_identity_553_is_sender_refused(kind: str, tls: TestTLS) -> None:
    handler = RecordingHandler(mail_reply="553 5.7.1 Sender address rejected: not owned by user")
    with LocalSMTPServer(handler=handler, starttls_context=tls.server_context, credentials=USERS) as server:
        with make_client(kind, server.host, server.port, timeout=10, tls_context=tls.client_context,
                         username="alice@example.test", password=USERS["alice@example.test"]) as client:
            with pytest.raises(smtp_fsm.SenderRefused) as info:
                client.sendmail("someone-else@example.test", ["b@example.test"], MESSAGE)
            assert info.value.code == 553 and info.value.reply.enhanced_code == "5.7.1"
            assert client.noop().code == 250  # still usable
        assert "RSET" not in handler.commands  # MAIL refused, RCPT/DATA not sent when not pipelining


class _ScriptedSTARTTLS(threading.Thread):
    """Answers EHLO with STARTTLS, then 220 plus injected bytes in the same write."""

    def __init__(self, tail: bytes) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.tail = tail
        self.received = b""

    def run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(b"220 mx ESMTP\r\n")
            self.received += conn.recv(1024)
            conn.sendall(b"250-mx\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n")
            self.received += conn.recv(1024)
            conn.sendall(b"220 go ahead\r\n" + self.tail)
            try:
                while chunk := conn.recv(1024):
                    self.received += chunk
            except OSError:
                pass
        self.listener.close()


@both
@pytest.mark.parametrize("tail", [b"250 injected\r\n", b"250-AUTH PLAIN\r\n250 ok\r\n", b"2"])
def test_starttls_response_injection_is_a_protocol_error(kind: str, tail: bytes) -> None:
    server = _ScriptedSTARTTLS(tail)
    server.start()
    with pytest.raises(smtp_fsm.RemoteProtocolError) as info, make_client(
        kind, "127.0.0.1", server.port, timeout=5, username="alice", password="secret",
    ):
        pass
    server.join(10)
    assert "STARTTLS" in str(info.value)
    assert server.received == b"EHLO [127.0.0.1]\r\nSTARTTLS\r\n"  # no handshake bytes, no AUTH


STARTTLS_REFUSED = """
S: 220 mx.example ESMTP
C: EHLO [127.0.0.1]
S: 250-mx.example
S: 250-AUTH PLAIN LOGIN
S: 250 STARTTLS
C: STARTTLS
S: 454 4.7.0 TLS not available due to temporary reason
# required: the client gives up politely; no AUTH, no MAIL, ever
C: QUIT
S: 221 2.0.0 bye
"""


@both
def test_required_starttls_refused_with_454_never_sends_auth(kind: str, scripted_smtp_server: object) -> None:
    server = scripted_smtp_server(STARTTLS_REFUSED)  # type: ignore[operator]
    with pytest.raises(smtp_fsm.TLSUnavailable) as info, make_client(
        kind, server.host, server.port, timeout=5, starttls="required",
        username="alice@example.test", password="secret",
    ):
        pass
    assert info.value.code == 454 and info.value.reply.enhanced_code == "4.7.0"
    # The fixture's teardown asserts the client wrote exactly the C: lines above.
