"""Replay of transcripts against the engine, and the SessionStepper."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smtp_fsm import (
    ClientSession,
    Closed,
    CommandDone,
    MessageSent,
    RemoteProtocolError,
    ServerDisconnected,
    SessionReady,
    StartTLS,
)
from smtp_fsm.testing import ReplayMismatch, SessionStepper, parse_transcript, replay

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"

PIPELINED = """
S: 220 mx.example ESMTP
C: EHLO client.example
S: 250-mx.example
S: 250 PIPELINING
C: MAIL FROM:<a@example.org>
C: RCPT TO:<b@example.net>
C: DATA
S: 250 OK
S: 250 OK
S: 354 go ahead
C: Subject: hi
C:
C: hello
C: .
S: 250 2.0.0 queued as 1
C: QUIT
S: 221 bye
"""


def send_one(session: ClientSession) -> None:
    session.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    session.quit()


def test_replay_returns_events_and_states():
    result = replay(PIPELINED, work=send_one, local_hostname="client.example")
    assert result.states == ["greeting", "ehlo", "ready", "data", "content", "ready", "quit", "closed"]
    kinds = [type(event) for event in result.events]
    assert kinds == [SessionReady, MessageSent, Closed]
    sent = result.events[1]
    assert isinstance(sent, MessageSent) and sent.result.ok
    assert result.error is None
    assert result.sent.startswith(b"EHLO client.example\r\n")


def test_default_work_is_quit_and_everything_is_compared_the_ehlo_name_too():
    text = "S: 220 hi\nC: EHLO teacher.example\nS: 250 hi\nC: QUIT\nS: 221 bye\n"
    assert replay(text, local_hostname="teacher.example").final_state == "closed"
    with pytest.raises(ReplayMismatch, match="transcript line 2") as info:
        replay(text)  # replay's own session says EHLO [127.0.0.1], as the drivers do on loopback
    assert info.value.actual == b"EHLO [127.0.0.1]\r\n" and ">    2 | C: EHLO teacher.example" in str(info.value)
    with pytest.raises(ReplayMismatch):
        replay(text, local_hostname="student.example")
    assert replay(text, ignore=["ehlo"]).final_state == "closed"
    assert replay(text.replace("teacher.example", "[127.0.0.1]")).final_state == "closed"


def test_ignore_leaves_out_named_headers_and_nothing_else():
    dated = PIPELINED.replace("C: Subject: hi\n", "C: Date: Tue, 1 Dec 2026 08:00:00 +0000\nC:  (folded)\n"
                              "C: Message-ID: <1@client.example>\nC: Subject: hi\n")

    def send_dated(date: str, message_id: str, subject: str = "hi") -> Callable[[ClientSession], None]:
        def work(session: ClientSession) -> None:
            content = f"Date: {date}\r\nMessage-ID: {message_id}\r\nSubject: {subject}\r\n\r\nhello\r\n"
            session.sendmail("a@example.org", ["b@example.net"], content.encode())
            session.quit()
        return work

    later = send_dated("Wed, 2 Dec 2026 09:30:00 +0000", "<2@client.example>")
    with pytest.raises(ReplayMismatch, match="Date"):
        replay(dated, work=later, local_hostname="client.example")
    ignore = ["Date", "message-id"]
    assert replay(dated, work=later, local_hostname="client.example", ignore=ignore).final_state == "closed"
    other_subject = send_dated("Wed, 2 Dec 2026 09:30:00 +0000", "<2@client.example>", subject="bye")
    with pytest.raises(ReplayMismatch, match="Subject: bye"):
        replay(dated, work=other_subject, local_hostname="client.example", ignore=ignore)
    with pytest.raises(ValueError, match="header field names"):
        replay(dated, ignore=["Bad Name:"])
    with pytest.raises(TypeError, match="collection of names"):
        replay(dated, ignore="Date")


def test_a_session_or_a_factory_may_be_given():
    text = "S: 220 hi\nC: LHLO lmtp.example\nS: 250 hi\nC: QUIT\nS: <close>\n"
    assert replay(text, ClientSession(local_hostname="lmtp.example", lmtp=True)).final_state == "closed"
    assert replay(text, lambda: ClientSession(local_hostname="lmtp.example", lmtp=True)).final_state == "closed"


def test_mismatch_names_step_line_state_and_bytes():
    wrong = PIPELINED.replace("RCPT TO:<b@example.net>", "RCPT TO:<c@example.net>")
    with pytest.raises(ReplayMismatch) as info:
        replay(wrong, work=send_one, local_hostname="client.example")
    error = info.value
    assert isinstance(error, AssertionError)
    assert error.step == 2  # after the EHLO reply, the second thing the server said
    assert error.lineno == 4  # "S: 250-mx.example" (the text starts with a newline)
    assert error.state == "data"
    assert error.expected.startswith(b"RCPT TO:<c@example.net>\r\n")
    assert error.actual.startswith(b"RCPT TO:<b@example.net>\r\n")
    text = str(error)
    assert "step 2" in text and "'data'" in text and "line 7" in text
    assert "RCPT TO:<c@example.net>" in text and "RCPT TO:<b@example.net>" in text


def test_client_writing_less_or_more_is_a_mismatch():
    fewer = PIPELINED.replace("C: QUIT\n", "C: QUIT\nC: NOOP\n")
    with pytest.raises(ReplayMismatch, match="less than the transcript"):
        replay(fewer, work=send_one, local_hostname="client.example")
    more = PIPELINED.replace("C: QUIT\n", "")
    with pytest.raises(ReplayMismatch, match="more than the transcript"):
        replay(more, work=send_one, local_hostname="client.example")


def test_transcript_going_on_after_the_session_ended():
    with pytest.raises(ReplayMismatch, match="already ended"):
        replay("S: 220 hi\nC: EHLO x.example\nS: 421 bye\nS: 250 more\n", local_hostname="x.example")


def test_masked_credentials_match_any_credential_and_are_never_shown():
    text = """
    S: 220 mx.example ESMTP
    C: EHLO client.example
    S: 250-mx.example
    S: 250 AUTH PLAIN LOGIN
    C: AUTH PLAIN <credentials>
    S: 235 2.7.0 ok
    C: QUIT
    S: 221 bye
    """
    for password in ("one", "two"):
        session = ClientSession(local_hostname="client.example", loopback=True, username="u", password=password)
        assert replay(text, session).final_state == "closed"
    login = text.replace("C: AUTH PLAIN <credentials>\n    S: 235", "C: AUTH LOGIN\n    S: 334 VXNlcm5hbWU6\n"
                         "    C: <credentials>\n    S: 334 UGFzc3dvcmQ6\n    C: <credentials>\n    S: 235")
    session = ClientSession(local_hostname="client.example", loopback=True, username="u", password="pw",
                            auth_mechanism="LOGIN")
    assert replay(login, session).final_state == "closed"
    # A mismatch after AUTH must not print the credentials.
    wrong = text.replace("C: QUIT", "C: NOOP")
    session = ClientSession(local_hostname="client.example", loopback=True, username="u", password="hunter2")
    with pytest.raises(ReplayMismatch) as info:
        replay(wrong, session)
    assert "hunter2" not in str(info.value)
    wrong_auth = text.replace("AUTH PLAIN <credentials>", "AUTH LOGIN")
    session = ClientSession(local_hostname="client.example", loopback=True, username="u", password="hunter2")
    with pytest.raises(ReplayMismatch) as info:
        replay(wrong_auth, session)
    assert "AHUAaHVudGVyMg" not in str(info.value) and "<credentials>" in str(info.value)


def test_starttls_handshake_is_reported_by_replay():
    text = """
    S: 220 mx.example ESMTP
    C: EHLO client.example
    S: 250-mx.example
    S: 250 STARTTLS
    C: STARTTLS
    S: 220 go ahead
    C: <starts TLS negotiation>
    """.replace("    C: <starts TLS negotiation>\n", "    # <TLS negotiation>\n") + """
    C: EHLO client.example
    S: 250 mx.example
    C: QUIT
    S: 221 bye
    """
    result = replay(text, ClientSession(local_hostname="client.example", starttls="required"))
    assert "tls_handshake" in result.states
    assert any(isinstance(event, StartTLS) for event in result.events)
    assert result.final_state == "closed"


def test_a_transcript_may_end_in_an_error():
    result = replay("S: 220 hi\nC: EHLO x.example\nS: 421 4.3.2 going down\n", local_hostname="x.example")
    assert isinstance(result.error, ServerDisconnected)
    assert result.final_state == "failed"
    result = replay("S: 220 hi\nC: EHLO x.example\nS: <close>\n", local_hostname="x.example")
    assert isinstance(result.error, ServerDisconnected)


def test_helo_fallback_transcript():
    text = "S: 220 old\nC: EHLO x.example\nS: 502 what?\nC: HELO x.example\nS: 250 hi\nC: QUIT\nS: 221 bye\n"
    assert replay(text, local_hostname="x.example").states == ["greeting", "ehlo", "helo", "ready", "quit", "closed"]


def test_replay_accepts_a_parsed_transcript():
    assert replay(parse_transcript(PIPELINED), work=send_one, local_hostname="client.example").final_state == "closed"


# -- the stepper --------------------------------------------------------------------


def test_stepper_answers_reply_by_reply():
    step = SessionStepper(local_hostname="client.example")
    step.session.noop()
    assert step.reply("220 mx.example ESMTP") == (b"EHLO client.example\r\n", "ehlo", ())
    done = step.reply("250-mx.example", b"250 8BITMIME")
    assert done.sent == b"NOOP\r\n" and done.state == "noop"
    assert isinstance(done.events[0], SessionReady)
    done = step.reply("250 2.0.0 OK\r\n")
    assert isinstance(done.events[0], CommandDone) and done.state == "ready"
    step.session.quit()
    assert step.pending().sent == b"QUIT\r\n"
    assert step.close().state == "closed"
    assert step.sent == b"EHLO client.example\r\nNOOP\r\nQUIT\r\n"
    assert [type(e) for e in step.events] == [SessionReady, CommandDone, Closed]
    assert step.error is None
    assert [s.state_after for s in step.trace][-1] == "closed"


def test_stepper_errors_are_events_not_exceptions():
    step = SessionStepper(local_hostname="client.example")
    step.reply("220 hi")
    done = step.reply("HELLO?")
    assert done.state == "failed"
    assert isinstance(step.error, RemoteProtocolError)
    assert step.events == [step.error, Closed(None, step.error)]


def test_stepper_tls():
    step = SessionStepper(local_hostname="client.example", starttls="required")
    step.reply("220 hi")
    assert step.reply("250-mx", "250 STARTTLS").sent == b"STARTTLS\r\n"
    done = step.reply("220 go ahead")
    assert done.state == "tls_handshake" and isinstance(done.events[0], StartTLS)
    assert step.tls_established() == (b"EHLO client.example\r\n", "ehlo", ())


def test_stepper_takes_a_session_or_options_not_both():
    session = ClientSession(local_hostname="client.example")
    assert SessionStepper(session).session is session
    with pytest.raises(TypeError):
        SessionStepper(session, lmtp=True)


def test_stepped_picks_errors_events_and_results():
    step = SessionStepper(local_hostname="client.example")
    ticket = step.session.sendmail("a@example.org", ["b@example.net", "c@example.net"], MESSAGE)
    quiet = step.reply("220 mx.example ESMTP")
    assert quiet.errors == () and quiet.of(SessionReady) == () and quiet.results == {}
    with pytest.raises(AssertionError, match="expected one error in this step, got \\(\\)"):
        _ = quiet.error
    step.reply("250-mx.example", "250 PIPELINING")
    step.reply("250 sender ok", "550 no such user", "250 ok", "354 go ahead")
    done = step.reply("250 2.0.0 queued")
    [sent] = done.of(MessageSent)
    assert done.results == {ticket: sent.result} and list(sent.result.refused) == ["b@example.net"]
    ended = step.reply("421 4.3.2 shutting down")
    assert isinstance(ended.error, ServerDisconnected) and ended.errors == (ended.error,)
    assert ended.of(Closed) == (Closed(None, ended.error),)
    assert ended.of(MessageSent) == () and ended.state == "failed"


def test_the_stepper_walks_a_transcript_and_checks_each_step():
    step = SessionStepper(transcript=PIPELINED, local_hostname="client.example")
    send_one(step.session)
    assert step.remaining == 7
    step.next()
    assert step.expect(state="ehlo", wrote=b"EHLO client.example\r\n", rows=["220"], events=[]).sent
    step.next()
    step.expect(state="data", rows=["ehlo_reply", "begin_mail"], events=[SessionReady])
    assert [(row.source, row.dest) for row in step.rows] == [("ehlo", "ready"), ("ready", "data")]
    rest = step.run()
    assert [s.state for s in rest] == ["data", "data", "content", "quit", "closed"] and step.remaining == 0
    step.expect(state="closed", events=[Closed])
    with pytest.raises(AssertionError, match="no more server lines"):
        step.next()
    with pytest.raises(TypeError, match="use next"):
        step.reply("250 OK")


def test_a_stepper_expectation_lists_every_difference_with_the_transcript():
    step = SessionStepper(transcript=PIPELINED, local_hostname="client.example")
    with pytest.raises(AssertionError, match="no step yet"):
        step.expect(state="greeting")
    send_one(step.session)
    step.next()
    with pytest.raises(AssertionError) as info:
        step.expect(state="ready", wrote=b"HELO client.example\r\n", events=[SessionReady], error=ServerDisconnected)
    text = str(info.value)
    assert "state: expected 'ready', got 'ehlo'" in text
    assert "wrote: expected b'HELO client.example\\r\\n', got b'EHLO client.example\\r\\n'" in text
    assert "events: expected ['SessionReady'], got []" in text and "error: expected one ServerDisconnected" in text
    assert ">    2 | S: 220 mx.example ESMTP" in text and "3 | C: EHLO client.example" in text


def test_the_stepper_on_a_transcript_fails_where_the_session_departs_from_it():
    step = SessionStepper(transcript=PIPELINED.replace("b@example.net", "c@example.net"),
                          local_hostname="client.example")
    send_one(step.session)
    step.next()
    with pytest.raises(ReplayMismatch, match="transcript line 7") as info:
        step.next()
    assert info.value.actual.startswith(b"RCPT TO:<b@example.net>") and ">    7 | C: RCPT TO:<c@example.net>" in str(
        info.value)


def test_ignored_header_values_leave_bdat_sizes_alone():
    chunked = """
    S: 220 mx.example ESMTP
    C: EHLO client.example
    S: 250-mx.example
    S: 250-PIPELINING
    S: 250 CHUNKING
    C: MAIL FROM:<a@example.org>
    C: RCPT TO:<b@example.net>
    C~ BDAT 45 LAST\\r\\nMessage-ID: <short@x>\\r\\nSubject: hi\\r\\n\\r\\nhello\\r\\n
    S: 250 OK
    S: 250 OK
    S: 250 2.0.0 queued
    C: QUIT
    S: 221 bye
    """

    def work(session: ClientSession) -> None:
        session.sendmail("a@example.org", ["b@example.net"],
                         b"Message-ID: <a-much-longer-one@client.example>\r\nSubject: hi\r\n\r\nhello\r\n")
        session.quit()

    with pytest.raises(ReplayMismatch, match="BDAT"):
        replay(chunked, work=work, local_hostname="client.example")
    assert replay(chunked, work=work, local_hostname="client.example", ignore=["Message-ID"]).error is None


def test_work_queued_while_ready_is_checked_with_the_next_reply():
    text = "S: 220 hi\nC: EHLO client.example\nS: 250 hi\nC: NOOP\nS: 250 ok\nC: QUIT\nS: 221 bye\n"
    step = SessionStepper(transcript=text, local_hostname="client.example")
    step.next()
    step.next()
    step.session.noop()
    assert step.pending().sent == b"NOOP\r\n"
    step.session.quit()
    step.next()
    step.expect(state="quit", wrote=b"QUIT\r\n")
    step.next()
    wrong = SessionStepper(transcript=text, local_hostname="client.example")
    wrong.next()
    wrong.next()
    wrong.session.rset()
    with pytest.raises(ReplayMismatch, match="something else than transcript line 4"):
        wrong.pending()  # checked as it is written
    idle = SessionStepper(transcript=text, local_hostname="client.example")
    idle.next()
    idle.next()
    with pytest.raises(ReplayMismatch, match=r"wrote less .* line 4 not written"):
        idle.next()  # the server speaks again: the NOOP it was owed never came
    untraced = SessionStepper(ClientSession(local_hostname="client.example"))
    untraced.reply("220 hi")
    with pytest.raises(AssertionError, match="keeps no trace"):
        untraced.expect(rows=["220"])
