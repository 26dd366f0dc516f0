"""quit_after: a session told to stop at a point (swaks' --quit-after) says QUIT there and sends nothing more."""

from __future__ import annotations

import pytest
from drivers import make_client
from sansio_helpers import CLIENT, GREETING, ehlo, reply, stepper

from smtp_fsm import (
    Authenticated,
    Closed,
    Event,
    LocalProtocolError,
    Outcome,
    RecipientsRefused,
    SenderRefused,
    SessionReady,
    StartTLS,
)
from smtp_fsm.testing import LocalSMTPServer, SessionStepper

EHLO_LINE = f"EHLO {CLIENT}\r\n".encode()
BYE = b"221 bye\r\n"


def test_banner_quits_right_after_the_greeting() -> None:
    h = stepper(quit_after="banner")
    step = h.feed(GREETING)
    assert step.sent == b"QUIT\r\n" and step.state == "quit" and step.of(Event) == ()
    step = h.feed(BYE)
    assert step.state == "closed" and [type(e) for e in step.of(Event)] == [Closed]


def test_ehlo_quits_before_starttls_and_auth() -> None:
    h = stepper(quit_after="ehlo", username="u", password="p", loopback=True)
    assert h.feed(GREETING).sent == EHLO_LINE
    step = h.feed(ehlo("STARTTLS", "AUTH PLAIN"))
    assert step.sent == b"QUIT\r\n" and not step.of(SessionReady)


def test_ehlo_also_stops_after_a_helo_fallback() -> None:
    h = stepper(quit_after="ehlo")
    h.feed(GREETING)
    assert h.feed(reply(502, "no EHLO")).sent == f"HELO {CLIENT}\r\n".encode()
    assert h.feed(reply(250, "hi")).sent == b"QUIT\r\n"


def test_tls_quits_after_the_handshake_without_a_second_ehlo() -> None:
    h = stepper(quit_after="tls")
    h.feed(GREETING)
    assert h.feed(ehlo("STARTTLS")).sent == b"STARTTLS\r\n"
    step = h.feed(reply(220, "go ahead"))
    assert step.of(StartTLS) and step.sent == b""
    h.session.tls_established()
    step = h.pending()
    assert step.sent == b"QUIT\r\n" and step.state == "quit"


def test_auth_quits_after_235_and_reports_the_authentication() -> None:
    h = stepper(quit_after="auth", username="u", password="p", loopback=True, auth_mechanism="PLAIN")
    h.feed(GREETING)
    assert h.feed(ehlo("AUTH PLAIN")).sent.startswith(b"AUTH PLAIN ")
    step = h.feed(reply(235, "ok"))
    assert step.sent == b"QUIT\r\n" and step.of(Authenticated) and not step.of(SessionReady)


def _probe(point: str, *keywords: str) -> SessionStepper:
    h = stepper(quit_after=point)
    h.feed(GREETING)
    h.feed(ehlo(*keywords))
    return h


def test_mail_probes_the_sender_only() -> None:
    h = _probe("mail", "PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n" and step.state == "mail"  # never pipelined
    step = h.feed(reply(250, "sender ok"))
    assert step.sent == b"QUIT\r\n"
    result = step.results[ticket]
    assert result.outcome is Outcome.NOT_SENT and result.error is None and not result.ok
    assert result.accepted == {} and result.refused == {} and result.reply is None


def test_rcpt_probes_each_recipient_one_by_one_and_never_sends_data() -> None:
    h = _probe("rcpt", "PIPELINING", "CHUNKING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org", "d@y.org"], b"hi\r\n")
    step = h.pending()
    wire = step.sent
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n"
    for answer in (reply(250), reply(250, "b ok"), reply(550, "5.1.1 no c"), reply(452, "4.5.3 later")):
        step = h.feed(answer)
        wire += step.sent
    assert wire == (b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nRCPT TO:<d@y.org>\r\n"
                    b"QUIT\r\n")
    result = step.results[ticket]
    assert result.outcome is Outcome.NOT_SENT and result.error is None
    assert list(result.accepted) == ["b@y.org"] and sorted(result.refused) == ["c@y.org", "d@y.org"]
    assert h.feed(BYE).state == "closed"


def test_rcpt_probe_where_everyone_is_refused_is_a_refusal() -> None:
    h = _probe("rcpt")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(reply(250))
    step = h.feed(reply(550, "no"))
    result = step.results[ticket]
    assert result.outcome is Outcome.REFUSED and isinstance(result.error, RecipientsRefused)
    assert step.sent == b"QUIT\r\n"


def test_rcpt_probe_stops_at_a_refused_sender() -> None:
    h = _probe("rcpt")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(reply(553, "no such sender"))
    assert step.sent == b"QUIT\r\n"
    result = step.results[ticket]
    assert result.outcome is Outcome.REFUSED and isinstance(result.error, SenderRefused)


def test_work_behind_the_stop_is_not_sent_and_new_work_is_refused() -> None:
    h = _probe("rcpt")
    tickets = h.session.send_many([("a@x.org", ["b@y.org"], b"one\r\n"), ("a@x.org", ["c@y.org"], b"two\r\n")])
    h.pending()
    h.feed(reply(250))
    step = h.feed(reply(250))
    results = step.results
    assert results[tickets[0]].outcome is Outcome.NOT_SENT and results[tickets[0]].error is None
    assert results[tickets[1]].outcome is Outcome.NOT_SENT and "quit_after" in str(results[tickets[1]].error)
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"three\r\n")


def test_setup_stop_settles_work_queued_before_the_greeting() -> None:
    h = stepper(quit_after="banner")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(GREETING)
    assert step.sent == b"QUIT\r\n" and step.results[ticket].outcome is Outcome.NOT_SENT


def test_an_unknown_stop_point_is_refused_before_anything() -> None:
    with pytest.raises(LocalProtocolError, match="quit_after"):
        stepper(quit_after="data")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_drivers_probe_a_real_server(kind: str) -> None:
    from smtp_fsm.testing import RecordingHandler

    handler = RecordingHandler(refuse={"nobody@example.org": "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler) as server:
        with make_client(kind, server.host, server.port, timeout=10, quit_after="rcpt") as client:
            result = client.sendmail("a@example.org", ["b@example.org", "nobody@example.org"], b"Subject: x\r\n\r\n")
            assert client.session.state in ("quit", "closed")
        assert result.outcome is Outcome.NOT_SENT and list(result.accepted) == ["b@example.org"]
        assert list(result.refused) == ["nobody@example.org"]
        assert server.messages == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_drivers_stop_during_setup_and_say_goodbye(kind: str) -> None:
    with LocalSMTPServer() as server:
        client = make_client(kind, server.host, server.port, timeout=10, quit_after="ehlo")
        with client:
            # connect() returns once the session has said QUIT and read the 221: no session was opened
            assert client.ready is None and client.session.state == "closed"
            bye = client.quit()
            assert bye is not None and bye.text.startswith("Bye")
