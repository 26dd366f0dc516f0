"""Sans-IO session setup: greeting, EHLO/LHLO, HELO fallback, STARTTLS and the AUTH states, byte for byte."""

from __future__ import annotations

import socket

import pytest
from sansio_helpers import CLIENT, GREETING, ehlo, ready, reply, stepper

from smtp_fsm import (
    Authenticated,
    AuthenticationError,
    ClientSession,
    Closed,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    ServerDisconnected,
    SessionReady,
    SMTPReplyError,
    StartTLS,
    TLSUnavailable,
    ehlo_name,
)
from smtp_fsm.testing import SessionStepper

EHLO_LINE = f"EHLO {CLIENT}\r\n".encode()
HELO_LINE = f"HELO {CLIENT}\r\n".encode()


def test_nothing_is_sent_before_the_greeting() -> None:
    h = stepper()
    step = h.pending()
    assert step.sent == b"" and step.of(Event) == () and step.state == "greeting"


def test_greeting_then_ehlo() -> None:
    h = stepper()
    step = h.feed(GREETING)
    assert step.sent == EHLO_LINE
    assert step.state == "ehlo"


def test_multiline_greeting() -> None:
    h = stepper()
    assert h.feed(b"220-mx.example ESMTP\r\n").sent == b""
    assert h.feed(b"220 welcome\r\n").sent == EHLO_LINE


def test_the_ehlo_name_is_required_never_guessed() -> None:
    with pytest.raises(TypeError, match="local_hostname"):
        ClientSession()  # type: ignore[call-arg]
    with pytest.raises(LocalProtocolError, match="local_hostname must be the EHLO name"):
        stepper(local_hostname=None)


def test_ehlo_name_gives_our_address_on_a_connected_socket_as_a_literal() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as sock:
        assert ehlo_name(sock) == f"[{sock.getsockname()[0]}]" == "[127.0.0.1]"
    assert ehlo_name("2001:db8::1") == "[IPv6:2001:db8::1]" and ehlo_name("fe80::1%eth0") == "[IPv6:fe80::1]"
    with pytest.raises(LocalProtocolError, match="needs an IP address"):
        ehlo_name("mail.example.com")
    session = stepper(local_hostname=ehlo_name("192.0.2.7")).session
    session.receive_data(GREETING)
    assert session.data_to_send() == b"EHLO [192.0.2.7]\r\n"


def test_ehlo_capabilities_are_parsed() -> None:
    h = stepper()
    h.feed(GREETING)
    step = h.feed(ehlo("PIPELINING", "SIZE 1000000", "8BITMIME", "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES"))
    [ready_event] = step.of(SessionReady)
    caps = ready_event.capabilities
    assert caps.pipelining and caps.eightbitmime and caps.enhanced_status_codes
    assert caps.max_size == 1000000
    assert caps.auth_mechanisms == ("PLAIN", "LOGIN")
    assert "pipelining" in caps
    assert h.session.capabilities == caps
    assert ready_event.encrypted is False and ready_event.authenticated_as is None


def test_lmtp_sends_lhlo() -> None:
    h = stepper(lmtp=True)
    assert h.feed(GREETING).sent == f"LHLO {CLIENT}\r\n".encode()
    assert h.feed(ehlo("PIPELINING")).state == "ready"


@pytest.mark.parametrize("code", [554, 521, 450, 500])
def test_refused_greeting_sends_quit_and_reports(code: int) -> None:
    h = stepper()
    step = h.feed(reply(code, "no service here"))
    assert step.sent == b"QUIT\r\n"
    assert step.state == "quit"
    assert isinstance(step.error, SMTPReplyError) and step.error.code == code
    final = h.feed(reply(221, "bye"))
    assert final.state == "closed" and final.sent == b""


def test_refused_greeting_then_close_without_221_is_clean() -> None:
    h = stepper()
    refused = h.feed(reply(554, "go away"))
    step = h.feed(b"")
    assert step.state == "closed" and step.of(Closed) == (Closed(None, refused.error),)
    assert isinstance(refused.error, SMTPReplyError) and refused.error.code == 554


@pytest.mark.parametrize("code", [500, 501, 502, 504, 550])
def test_ehlo_refused_falls_back_to_helo(code: int) -> None:
    h = stepper()
    h.feed(GREETING)
    step = h.feed(reply(code, "EHLO not understood"))
    assert step.sent == HELO_LINE and step.state == "helo" and step.errors == ()
    step = h.feed(reply(250, "mx.example"))
    assert step.state == "ready" and step.sent == b""
    [event] = step.of(SessionReady)
    assert dict(event.capabilities.keywords) == {}


@pytest.mark.parametrize("code", [451, 554, 553, 503])
def test_ehlo_other_refusal_ends_the_session(code: int) -> None:
    h = stepper()
    h.feed(GREETING)
    step = h.feed(reply(code, "nope"))
    assert step.sent == b"QUIT\r\n" and step.state == "quit"
    assert isinstance(step.error, SMTPReplyError) and step.error.code == code


@pytest.mark.parametrize("code", [500, 502])
def test_lmtp_has_no_helo_fallback(code: int) -> None:
    h = stepper(lmtp=True)
    h.feed(GREETING)
    step = h.feed(reply(code, "nope"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, SMTPReplyError)


@pytest.mark.parametrize("code", [500, 501, 502, 504, 550, 554])
def test_helo_refused_ends_the_session(code: int) -> None:
    h = stepper()
    h.feed(GREETING)
    h.feed(reply(502, "no EHLO"))
    step = h.feed(reply(code, "no HELO either"))
    assert step.sent == b"QUIT\r\n" and step.state == "quit"
    assert isinstance(step.error, SMTPReplyError) and step.error.code == code


def test_helo_with_credentials_cannot_authenticate() -> None:
    h = stepper(username="u", password="p", loopback=True)
    h.feed(GREETING)
    h.feed(reply(502, "no EHLO"))
    step = h.feed(reply(250, "mx.example"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, AuthenticationError)


def test_work_queued_early_waits_for_the_session() -> None:
    h = stepper()
    ticket = h.session.sendmail("a@x.org", "b@y.org", b"hi\r\n")
    step = h.pending()
    assert step.sent == b""
    assert h.feed(GREETING).sent == EHLO_LINE
    step = h.feed(ehlo())
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n"
    assert step.state == "mail"
    assert ticket == 1


@pytest.mark.parametrize("name", ["bad\r\nMAIL FROM:<x>", "bad\nname", "bad\x00", "bad\x7f", "tab\there"])
def test_controls_in_ehlo_name_raise(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        stepper(local_hostname=name)


def test_invalid_constructor_options() -> None:
    with pytest.raises(LocalProtocolError):
        stepper(starttls="sometimes")
    with pytest.raises(LocalProtocolError):
        stepper(chunk_size=0)
    with pytest.raises(LocalProtocolError):
        stepper(username="u")
    with pytest.raises(LocalProtocolError):
        stepper(password="p")
    with pytest.raises(LocalProtocolError):
        stepper(username="u", password="p", auth_mechanism="GSSAPI")
    with pytest.raises(LocalProtocolError):
        stepper(username="u", password="p\r\nMAIL FROM:<x>")


# --- STARTTLS -------------------------------------------------------------------


def _at_starttls(**options: object) -> SessionStepper:
    h = stepper(**options)
    h.feed(GREETING)
    step = h.feed(ehlo("STARTTLS", "AUTH PLAIN", "PIPELINING"))
    assert step.sent == b"STARTTLS\r\n" and step.state == "starttls"
    assert step.of(SessionReady) == ()
    return h


def test_starttls_offered_is_used_opportunistically() -> None:
    h = _at_starttls()
    step = h.feed(reply(220, "go ahead"))
    assert step.sent == b"" and step.state == "tls_handshake"
    [event] = step.of(StartTLS)
    assert event.reply.code == 220


def test_after_tls_capabilities_are_forgotten_and_ehlo_sent_again() -> None:
    h = _at_starttls()
    h.feed(reply(220, "go ahead"))
    h.session.tls_established()
    step = h.pending()
    assert step.sent == EHLO_LINE and step.state == "ehlo"
    assert dict(h.session.capabilities.keywords) == {}
    step = h.feed(ehlo("SIZE 500"))
    assert step.state == "ready"
    [event] = step.of(SessionReady)
    assert event.encrypted is True
    assert dict(event.capabilities.keywords) == {"SIZE": "500"}
    assert not h.session.capabilities.pipelining and not h.session.capabilities.starttls


def test_no_second_starttls_after_tls() -> None:
    h = _at_starttls()
    h.feed(reply(220, "go ahead"))
    h.session.tls_established()
    h.pending()
    step = h.feed(ehlo("STARTTLS"))
    assert step.state == "ready" and step.sent == b""


def test_starttls_is_never_pipelined_with_queued_mail() -> None:
    h = stepper()
    h.session.sendmail("a@x.org", "b@y.org", b"hi\r\n")
    h.pending()
    h.feed(GREETING)
    step = h.feed(ehlo("PIPELINING", "STARTTLS"))
    assert step.sent == b"STARTTLS\r\n"


@pytest.mark.parametrize("extra", [b"250 injected\r\n", b"250-PIPELINING\r\n250 AUTH PLAIN\r\n", b"2", b"x"])
def test_bytes_after_220_in_the_same_feed_are_injection(extra: bytes) -> None:
    h = _at_starttls()
    step = h.feed(reply(220, "go ahead") + extra)
    assert isinstance(step.error, RemoteProtocolError)
    assert step.sent == b""
    assert step.state == "failed"
    with pytest.raises(LocalProtocolError):
        h.session.tls_established()


def test_bytes_after_220_in_a_later_feed_are_injection() -> None:
    h = _at_starttls()
    h.feed(reply(220, "go ahead"))
    step = h.feed(b"250 hello\r\n")
    assert isinstance(step.error, RemoteProtocolError)
    assert step.sent == b"" and step.state == "failed"


def test_close_during_handshake_is_a_disconnect() -> None:
    h = _at_starttls()
    h.feed(reply(220, "go ahead"))
    step = h.feed(b"")
    assert isinstance(step.error, ServerDisconnected)
    assert step.error.state == "tls_handshake"


@pytest.mark.parametrize("code", [454, 501, 502])
def test_starttls_refused_opportunistic_continues_in_clear(code: int) -> None:
    h = _at_starttls()
    step = h.feed(reply(code, "TLS not available"))
    assert step.state == "ready" and step.errors == ()
    [event] = step.of(SessionReady)
    assert event.encrypted is False


def test_starttls_never_does_not_upgrade() -> None:
    h = stepper(starttls="never")
    h.feed(GREETING)
    step = h.feed(ehlo("STARTTLS"))
    assert step.state == "ready" and step.sent == b""


def test_already_encrypted_does_not_upgrade() -> None:
    h = stepper(encrypted=True, starttls="required")
    h.feed(GREETING)
    step = h.feed(ehlo("STARTTLS"))
    assert step.state == "ready" and step.sent == b""
    assert step.of(SessionReady)[0].encrypted is True


def test_tls_established_outside_the_handshake_is_a_local_error() -> None:
    h = ready()
    with pytest.raises(LocalProtocolError):
        h.session.tls_established()


@pytest.mark.parametrize("ehlo_reply", [ehlo("AUTH PLAIN", "PIPELINING"), reply(502, "no EHLO")])
def test_starttls_required_but_not_offered(ehlo_reply: bytes) -> None:
    h = stepper(starttls="required", username="u", password="p", loopback=True)
    h.session.sendmail("a@x.org", "b@y.org", b"hi\r\n")
    h.pending()
    h.feed(GREETING)
    step = h.feed(ehlo_reply)
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, TLSUnavailable)
    final = h.feed(reply(221, "bye"))
    assert final.sent == b"" and final.state == "closed"


@pytest.mark.parametrize("code", [454, 501, 500, 554])
def test_starttls_required_and_refused(code: int) -> None:
    h = stepper(starttls="required", username="u", password="p", loopback=True)
    h.session.sendmail("a@x.org", "b@y.org", b"hi\r\n")
    h.pending()
    h.feed(GREETING)
    assert h.feed(ehlo("STARTTLS", "AUTH PLAIN")).sent == b"STARTTLS\r\n"
    step = h.feed(reply(code, "TLS not available"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, TLSUnavailable) and step.error.code == code
    assert h.feed(reply(221, "bye")).sent == b""


# --- AUTH states (byte-level exchanges are in test_auth_sansio.py) -----------------


def test_auth_after_ehlo_then_ready() -> None:
    h = stepper(username="user", password="pw", loopback=True, auth_mechanism="LOGIN")
    h.feed(GREETING)
    step = h.feed(ehlo("AUTH LOGIN PLAIN"))
    assert step.sent == b"AUTH LOGIN\r\n" and step.state == "auth"
    step = h.feed(reply(334, "VXNlcm5hbWU6"))
    assert step.state == "auth_response"
    step = h.feed(reply(334, "UGFzc3dvcmQ6"))
    assert step.state == "auth_response"
    step = h.feed(reply(235, "2.7.0 Authentication successful"))
    assert step.state == "ready"
    assert step.of(Authenticated)[0].mechanism == "LOGIN"
    assert step.of(SessionReady)[0].authenticated_as == "user"


@pytest.mark.parametrize("code", [535, 534, 538, 454, 504])
def test_auth_refused_ends_the_session(code: int) -> None:
    h = stepper(username="user", password="pw", loopback=True)
    h.feed(GREETING)
    h.feed(ehlo("AUTH PLAIN"))
    step = h.feed(reply(code, "no"))
    assert step.sent == b"QUIT\r\n" and step.state == "quit"
    assert isinstance(step.error, AuthenticationError) and step.error.code == code


def test_auth_after_starttls_uses_second_ehlo() -> None:
    h = stepper(username="user", password="pw", starttls="required")
    h.feed(GREETING)
    assert h.feed(ehlo("STARTTLS", "AUTH CRAM-MD5")).sent == b"STARTTLS\r\n"
    h.feed(reply(220, "go"))
    h.session.tls_established()
    assert h.pending().sent == EHLO_LINE
    step = h.feed(ehlo("AUTH LOGIN"))
    assert step.sent == b"AUTH LOGIN\r\n"


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_any_bytes_like_object_is_taken(kind: type) -> None:
    as_bytes, other = stepper(), stepper()
    for data in (GREETING, ehlo("PIPELINING"), b""):
        expected = as_bytes.feed(data)
        step = other.feed(kind(data))  # type: ignore[arg-type]
        assert (step.sent, step.state, [repr(e) for e in step.of(Event)]) == (
            expected.sent, expected.state, [repr(e) for e in expected.of(Event)])
    assert other.state == "failed"  # the close mid-session, as with bytes


def test_text_is_refused_with_a_clear_type_error() -> None:
    h = stepper()
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview, not str"):
        h.session.receive_data("220 mx\r\n")  # type: ignore[arg-type]
    assert h.state == "greeting"
