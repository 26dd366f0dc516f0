"""Sans-IO transactions: MAIL/RCPT/DATA/BDAT with and without pipelining, send_many, RSET, NOOP, QUIT, 421, close."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from lab import LAB_MESSAGE
from sansio_helpers import LIVE_STATES, drive_to, ready, reply

from smtp_fsm import (
    Closed,
    CommandDone,
    DataRefused,
    LocalProtocolError,
    RecipientsRefused,
    RemoteProtocolError,
    SenderRefused,
    ServerDisconnected,
)
from smtp_fsm.protocol import table

OK = b"250 ok\r\n"
GO = b"354 go ahead\r\n"
QUEUED = b"250 2.0.0 queued as ABC\r\n"


def test_one_message_step_by_step_without_pipelining() -> None:
    h = ready()
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"Subject: hi\r\n\r\nhello\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n" and step.state == "mail"
    step = h.feed(OK)
    assert step.sent == b"RCPT TO:<b@y.org>\r\n" and step.state == "rcpt"
    step = h.feed(OK)
    assert step.sent == b"RCPT TO:<c@y.org>\r\n" and step.state == "rcpt"
    step = h.feed(b"550 5.1.1 unknown\r\n")
    assert step.sent == b"DATA\r\n" and step.state == "data"
    step = h.feed(GO)
    assert step.sent == b"Subject: hi\r\n\r\nhello\r\n.\r\n" and step.state == "content"
    step = h.feed(QUEUED)
    assert step.state == "ready" and step.sent == b""
    result = step.results[ticket]
    assert result.ok and list(result.accepted) == ["b@y.org"]
    assert result.refused["c@y.org"].code == 550
    assert result.reply is not None and "queued as ABC" in result.reply.text


def test_one_message_pipelined_is_one_write() -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hello\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n"
    step = h.feed(OK + OK + OK + GO)
    assert step.sent == b"hello\r\n.\r\n"
    step = h.feed(QUEUED)
    assert step.results[ticket].ok and step.state == "ready"


def test_pipelining_switched_off_by_the_caller() -> None:
    h = ready("PIPELINING", pipelining=False)
    h.session.sendmail("a@x.org", ["b@y.org"], b"hello\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n"


def test_null_sender() -> None:
    h = ready()
    h.session.sendmail("", ["b@y.org"], b"bounce\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<>\r\n"


def test_lab_message_goes_out_normalised() -> None:
    h = ready()
    ticket = h.session.sendmail("me@163.com", ["you@qq.com"], LAB_MESSAGE)
    h.pending()
    h.feed(OK)
    h.feed(OK)
    step = h.feed(GO)
    assert step.sent == (
        b"from: hspikes <****@163.com>\r\n"
        b"to: hspikes <****@qq.com>\r\n"
        b"subject: Hello\r\n"
        b"Content-Type: text/plain\t\r\n"
        b"\r\n I love computer network!\r\n.\r\n"
    )
    assert h.feed(QUEUED).results[ticket].ok


def test_dot_lines_are_stuffed() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org"], b".starts with dot\r\n.\r\n..two\r\nend.\r\n")
    h.pending()
    step = h.feed(OK + OK + GO)
    assert step.sent == b"..starts with dot\r\n..\r\n...two\r\nend.\r\n.\r\n"


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("code", [550, 553, 451, 501, 552])
def test_sender_refused_then_rset_and_usable(code: int, pipelined: bool) -> None:
    h = ready(*(("PIPELINING",) if pipelined else ()))
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    if pipelined:
        step = h.feed(reply(code, "sender refused") + b"503 5.5.1 no sender\r\n" + b"554 5.5.1 no valid recipients\r\n")
    else:
        step = h.feed(reply(code, "sender refused"))
    assert step.sent == b"RSET\r\n" and step.state == "rset"
    step = h.feed(OK)
    assert step.state == "ready"
    result = step.results[ticket]
    assert not result.ok
    assert isinstance(result.error, SenderRefused) and result.error.code == code
    assert step.of(CommandDone) == ()  # the RSET was ours, not the caller's
    h.session.sendmail("a@x.org", ["b@y.org"], b"again\r\n")
    step = h.pending()
    assert step.sent.startswith(b"MAIL FROM:<a@x.org>")


@pytest.mark.parametrize("code", [550, 551, 553, 450, 451, 452])
def test_every_recipient_refused_no_data_then_rset(code: int) -> None:
    h = ready()
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK)
    assert h.feed(reply(code, "no")).sent == b"RCPT TO:<c@y.org>\r\n"
    step = h.feed(reply(code, "no"))
    assert step.sent == b"RSET\r\n"
    step = h.feed(OK)
    result = step.results[ticket]
    assert isinstance(result.error, RecipientsRefused)
    assert set(result.error.replies) == {"b@y.org", "c@y.org"}
    assert {addr: r.code for addr, r in result.refused.items()} == {"b@y.org": code, "c@y.org": code}
    assert step.state == "ready"


@pytest.mark.parametrize("code", [554, 451, 503, 500])
def test_data_refused_then_rset(code: int) -> None:
    h = ready()
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK)
    h.feed(OK)
    step = h.feed(reply(code, "no data"))
    assert step.sent == b"RSET\r\n"
    step = h.feed(OK)
    result = step.results[ticket]
    assert isinstance(result.error, DataRefused) and result.error.code == code
    assert step.state == "ready"


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("code", [250, 220, 450, 554])
def test_data_answered_without_354_is_not_a_sent_message(code: int, pipelined: bool) -> None:
    # RFC 5321 §4.1.1.4: only a 3xx (354) lets the content go; anything else means the message was not taken.
    h = ready(*(("PIPELINING",) if pipelined else ()))
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    if pipelined:
        step = h.feed(OK + OK + reply(code, "odd"))
    else:
        h.feed(OK)
        step = h.feed(OK)
        assert step.sent == b"DATA\r\n"
        step = h.feed(reply(code, "odd"))
    assert b"hi\r\n" not in step.sent
    step = h.feed(OK) if step.state == "rset" else step
    result = step.results[ticket]
    assert not result.ok and isinstance(result.error, DataRefused)


@pytest.mark.parametrize("code", [554, 552, 451, 550])
def test_final_reply_refused(code: int) -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(reply(code, "content refused"))
    result = step.results[ticket]
    assert not result.ok and isinstance(result.error, DataRefused) and result.error.code == code
    assert step.state == "ready"
    h.session.sendmail("a@x.org", ["b@y.org"], b"next\r\n")
    step = h.pending()
    assert step.sent.startswith(b"MAIL FROM:")


def test_three_messages_one_connection_without_pipelining() -> None:
    h = ready()
    tickets = []
    for i in range(3):
        tickets.append(h.session.sendmail("a@x.org", [f"r{i}@y.org"], f"m{i}\r\n".encode()))
        h.pending()
    seen = {}
    for i in range(3):
        assert h.state == "mail"
        h.feed(OK)
        h.feed(OK)
        assert h.feed(GO).sent == f"m{i}\r\n.\r\n".encode()
        step = h.feed(QUEUED)
        seen.update(step.results)
        if i < 2:
            assert step.sent == b"MAIL FROM:<a@x.org>\r\n"
    assert sorted(seen) == tickets and all(r.ok for r in seen.values())
    assert h.state == "ready"


def test_send_many_pipelined_sends_next_group_with_the_data() -> None:
    h = ready("PIPELINING")
    items = [("a@x.org", [f"r{i}@y.org"], f"m{i}\r\n") for i in range(3)]
    tickets = h.session.send_many(items)
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<r0@y.org>\r\nDATA\r\n"
    step = h.feed(OK + OK + GO)
    assert step.sent == b"m0\r\n.\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<r1@y.org>\r\nDATA\r\n"
    step = h.feed(QUEUED + OK + OK + GO)
    assert step.sent == b"m1\r\n.\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<r2@y.org>\r\nDATA\r\n"
    done = step.results
    step = h.feed(QUEUED + OK + OK + GO)
    assert step.sent == b"m2\r\n.\r\n"
    done.update(step.results)
    step = h.feed(QUEUED)
    done.update(step.results)
    assert sorted(done) == tickets and all(r.ok for r in done.values())
    assert step.state == "ready"


def test_send_many_with_email_messages() -> None:
    h = ready()
    messages = []
    for i in range(2):
        msg = EmailMessage()
        msg["From"] = "a@x.org"
        msg["To"] = f"r{i}@y.org"
        msg.set_content(f"body {i}\n")
        messages.append(msg)
    tickets = h.session.send_many(messages)
    step = h.pending()
    assert len(tickets) == 2 and step.sent == b"MAIL FROM:<a@x.org>\r\n"
    assert h.feed(OK).sent == b"RCPT TO:<r0@y.org>\r\n"


def test_send_many_pipelined_failure_inside_the_second_group() -> None:
    h = ready("PIPELINING")
    tickets = h.session.send_many([("a@x.org", ["r0@y.org"], "m0\r\n"), ("a@x.org", ["r1@y.org"], "m1\r\n")])
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(QUEUED + OK + b"550 no such user\r\n" + b"554 no valid recipients\r\n")
    assert step.sent == b"RSET\r\n"
    step2 = h.feed(OK)
    done = {**step.results, **step2.results}
    assert done[tickets[0]].ok
    assert isinstance(done[tickets[1]].error, RecipientsRefused)
    assert step2.state == "ready"


def test_421_mid_batch_reports_what_completed() -> None:
    h = ready("PIPELINING")
    tickets = h.session.send_many([("a@x.org", ["r@y.org"], f"m{i}\r\n") for i in range(3)])
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(QUEUED + b"421 4.3.2 shutting down\r\n")
    assert step.results[tickets[0]].ok
    assert isinstance(step.error, ServerDisconnected)
    assert step.error.reply is not None and step.error.reply.code == 421
    assert step.state == "failed" and step.sent == b""


def test_close_mid_batch_reports_what_completed() -> None:
    h = ready("PIPELINING")
    tickets = h.session.send_many([("a@x.org", ["r@y.org"], f"m{i}\r\n") for i in range(3)])
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(QUEUED)
    assert step.results[tickets[0]].ok
    step = h.feed(b"")
    assert isinstance(step.error, ServerDisconnected) and step.error.state == "data"


def test_rset_and_noop_on_request() -> None:
    h = ready()
    ticket = h.session.rset()
    step = h.pending()
    assert step.sent == b"RSET\r\n" and step.state == "rset"
    step = h.feed(OK)
    assert step.of(CommandDone) == (CommandDone(ticket, "RSET", step.of(CommandDone)[0].reply),)
    assert step.state == "ready"
    ticket = h.session.noop()
    step = h.pending()
    assert step.sent == b"NOOP\r\n" and step.state == "noop"
    step = h.feed(reply(250, "2.0.0 nothing"))
    [done] = step.of(CommandDone)
    assert done.ticket == ticket and done.verb == "NOOP" and done.reply.code == 250


@pytest.mark.parametrize("verb", ["noop", "rset"])
@pytest.mark.parametrize("code", [500, 502, 554])
def test_noop_or_rset_refused(verb: str, code: int) -> None:
    h = ready()
    getattr(h.session, verb)()
    h.pending()
    step = h.feed(reply(code, "no"))
    assert step.sent == b"QUIT\r\n" and step.errors


def test_work_queued_during_a_transaction_waits() -> None:
    h = ready()
    t1 = h.session.sendmail("a@x.org", ["b@y.org"], b"one\r\n")
    h.pending()
    t2 = h.session.noop()
    step = h.pending()
    assert step.sent == b""
    h.feed(OK)
    h.feed(OK)
    h.feed(GO)
    step = h.feed(QUEUED)
    assert step.sent == b"NOOP\r\n" and t1 in step.results
    step = h.feed(OK)
    assert step.of(CommandDone)[0].ticket == t2


@pytest.mark.parametrize("with_221", [True, False])
def test_quit_is_a_clean_end_with_or_without_221(with_221: bool) -> None:
    h = ready()
    h.session.quit()
    step = h.pending()
    assert step.sent == b"QUIT\r\n" and step.state == "quit"
    step = h.feed(reply(221, "bye") if with_221 else b"")
    assert step.errors == () and step.state == "closed"
    [closed] = step.of(Closed)
    assert (closed.reply is not None) == with_221
    if with_221:
        assert h.feed(b"").errors == ()


def test_quit_after_queued_message() -> None:
    h = ready()
    t1 = h.session.sendmail("a@x.org", ["b@y.org"], b"one\r\n")
    h.pending()
    h.session.quit()
    h.pending()
    h.feed(OK)
    h.feed(OK)
    h.feed(GO)
    step = h.feed(QUEUED)
    assert step.sent == b"QUIT\r\n" and step.results[t1].ok


def test_no_work_after_quit() -> None:
    h = ready()
    h.session.quit()
    h.pending()
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"late\r\n")
    h.feed(reply(221, "bye"))
    with pytest.raises(LocalProtocolError):
        h.session.noop()


def test_close_releases_the_engine() -> None:
    h = ready()
    h.session.close()
    assert h.session.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")
    h.session.receive_data(b"250 ok\r\n")  # ignored: the session is over
    closed = h.session.next_event()
    assert closed == Closed(None, None) and h.state == "closed" and h.session.next_event() is closed


def test_no_recipients_is_a_local_error() -> None:
    h = ready()
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", [], b"x\r\n")


def test_live_states_cover_the_table() -> None:
    assert set(LIVE_STATES) == set(table.LIVE_STATES)


@pytest.mark.parametrize("state", LIVE_STATES)
def test_421_in_every_live_state_names_the_state(state: str) -> None:
    h = drive_to(state)
    step = h.feed(b"421 4.3.2 service shutting down\r\n")
    assert step.state == "failed" and step.sent == b""
    if state == "tls_handshake":
        # Nothing may arrive between the 220 to STARTTLS and the handshake, not even a 421.
        assert isinstance(step.error, RemoteProtocolError)
        return
    assert isinstance(step.error, ServerDisconnected), step.errors
    assert step.error.state == state
    assert step.error.reply is not None and step.error.reply.code == 421


@pytest.mark.parametrize("state", LIVE_STATES)
def test_server_close_in_every_live_state_names_the_state(state: str) -> None:
    h = drive_to(state)
    step = h.feed(b"")
    assert step.state == "failed" and step.sent == b""
    assert isinstance(step.error, ServerDisconnected)
    assert step.error.state == state and step.error.reply is None


def test_421_answer_to_quit_is_clean() -> None:
    h = drive_to("quit")
    step = h.feed(b"421 closing anyway\r\n")
    assert step.errors == () and step.state == "closed"


def test_bytes_after_the_end_are_ignored() -> None:
    h = drive_to("quit")
    closed = h.feed(b"").of(Closed)[0]
    h.session.receive_data(b"221 late\r\n")
    h.session.receive_data(b"")
    assert h.session.next_event() is closed and h.session.data_to_send() == b"" and h.state == "closed"


def test_the_error_is_raised_once_then_the_same_closed_for_good() -> None:
    h = drive_to("ready")
    h.session.receive_data(b"")
    with pytest.raises(ServerDisconnected) as info:
        h.session.next_event()
    closed = h.session.next_event()
    assert isinstance(closed, Closed) and closed.error is info.value and closed.reply is None
    assert all(h.session.next_event() is closed for _ in range(3))


def test_one_content_to_many_envelopes_is_prepared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """send_many items sharing one bytes object (one message, each recipient its own envelope): the
    content is normalised and checked once; a different object, even equal, is prepared on its own."""
    import smtp_fsm.transaction

    prepared: list[bytes | str] = []
    real = smtp_fsm.transaction.payload_from_bytes

    def counting(data: bytes | str) -> Any:
        prepared.append(data)
        return real(data)

    monkeypatch.setattr(smtp_fsm.transaction, "payload_from_bytes", counting)
    shared = b"Subject: news\nFrom: a@x.org\n\n.dot first\nbye"  # (bare LFs and a dot: normalised, stuffed)
    other = bytes(bytearray(shared))
    h = ready("PIPELINING")
    tickets = h.session.send_many([("a@x.org", [f"r{n}@y.org"], shared) for n in range(3)]
                                  + [("a@x.org", "s@y.org", other)])
    assert prepared == [shared, other]
    wire = h.pending().sent
    results = {}
    for n in range(len(tickets)):
        step = h.feed((QUEUED if n else b"") + OK + OK + GO)  # (the previous message's final reply first)
        assert step.sent.startswith(b"Subject: news\r\nFrom: a@x.org\r\n\r\n..dot first\r\nbye\r\n.\r\n")
        wire += step.sent
        results.update(step.results)
    results.update(h.feed(QUEUED).results)
    assert all(results[ticket].ok for ticket in tickets) and wire.count(b"\r\n..dot first\r\n") == 4


def test_queued_messages_hold_no_copy_of_their_content() -> None:
    """A message is dot-stuffed as it goes out, not when queued: send_many of many large messages
    keeps the caller's bytes and no second copy of each (and the wire is still stuffed)."""
    import tracemalloc

    size, count = 64 * 1024, 40
    line = b"x" * 74 + b"\r\n"
    contents = [b".first line\r\n" + line * (size // len(line)) + b"%d\r\n" % n for n in range(count)]
    h = ready("PIPELINING")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tickets = h.session.send_many([("a@x.org", "b@y.org", content) for content in contents])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2 * size, f"{count} queued messages of {size} octets hold {held} octets more"
    assert h.pending().sent.endswith(b"DATA\r\n")
    step = h.feed(OK + OK + GO)
    assert step.sent == b"." + contents[0] + b".\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
    assert len(tickets) == count
