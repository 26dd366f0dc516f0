"""What a trace records for people: the command each reply answers, and each event in words."""

from __future__ import annotations

import pytest
from sansio_helpers import stepper

from smtp_fsm import ClientSession
from smtp_fsm._traced import TracedSessionModel, event_words
from smtp_fsm.errors import AuthenticationError
from smtp_fsm.events import Authenticated, Closed, CommandDone, MessageSent, SessionReady, StartTLS
from smtp_fsm.extensions import Capabilities
from smtp_fsm.replies import Reply
from smtp_fsm.results import Outcome, SendResult
from smtp_fsm.trace import MASK


def test_a_session_without_a_trace_does_not_pay_for_one() -> None:
    assert type(ClientSession(local_hostname="c.example")._model) is not TracedSessionModel
    assert type(ClientSession(local_hostname="c.example", trace=True)._model) is TracedSessionModel


def test_each_pipelined_reply_names_the_command_it_answers() -> None:
    step = stepper(trace=True)
    step.session.sendmail("a@example.org", ["b@example.org", "c@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    step.feed(b"220 mx\r\n")
    step.feed(b"250-mx\r\n250 PIPELINING\r\n")
    step.feed(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n")
    step.feed(b"250 2.0.0 queued\r\n")
    replies = [(s.reply.code, s.answers) for s in step.trace if s.reply is not None]
    assert replies == [
        (220, "(the connection)"),
        (250, "EHLO client.example"),
        (250, "MAIL FROM:<a@example.org>"),
        (250, "RCPT TO:<b@example.org>"),
        (550, "RCPT TO:<c@example.org>"),
        (354, "DATA"),
        (250, "."),
    ]
    assert all(s.answers == "" for s in step.trace if s.reply is None)  # the caller's steps answer nothing


def test_chunks_lmtp_and_auth_are_named_too_and_credentials_never() -> None:
    step = stepper(trace=True, lmtp=True, username="u", password="hunter2", auth_mechanism="LOGIN",
                   allow_insecure_auth=True)
    step.session.sendmail("a@example.org", ["b@example.org", "c@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    for reply in (b"220 mx\r\n", b"250-mx\r\n250-AUTH LOGIN\r\n250 PIPELINING\r\n", b"334 VXNlcm5hbWU6\r\n",
                  b"334 UGFzc3dvcmQ6\r\n", b"235 ok\r\n", b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
                  b"250 ok b\r\n452 full c\r\n"):
        step.feed(reply)
    answers = [s.answers for s in step.trace if s.reply is not None]
    assert answers[:5] == ["(the connection)", "LHLO client.example", "AUTH LOGIN", MASK.decode(), MASK.decode()]
    # LMTP: one reply per accepted recipient to the one "."
    assert answers[-2:] == ["(the end of the data) for b@example.org", "(the end of the data) for c@example.org"]
    assert all("hunter2" not in s.answers and "aHVudGVyMg" not in s.answers for s in step.trace)

    chunked = stepper(trace=True, chunk_size=8)
    chunked.session.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhello\r\n")  # 21 bytes
    chunked.feed(b"220 mx\r\n")
    chunked.feed(b"250-mx\r\n250 CHUNKING\r\n")
    for _ in range(10):  # MAIL, RCPT, then one reply per chunk
        if chunked.session.state == "ready":
            break
        chunked.feed(b"250 ok\r\n")
    assert [s.answers for s in chunked.trace if s.reply is not None] == [
        "(the connection)", "EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>",
        "BDAT 8", "BDAT 8", "BDAT 5 LAST"]


REPLY = Reply(250, ("2.0.0 queued",))


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (SessionReady(Capabilities.from_reply(Reply(250, ("mx", "PIPELINING", "SIZE 1000"))), REPLY, True, "alice"),
         "the session is open (encrypted, authenticated as alice); the server offers PIPELINING, SIZE 1000"),
        (SessionReady(Capabilities(), REPLY, False, None), "the session is open (not encrypted); no extensions (HELO)"),
        (StartTLS(Reply(220, ("go",))), "220 to STARTTLS: the client now runs the TLS handshake"),
        (Authenticated("PLAIN", Reply(235, ("ok",))), "authenticated with PLAIN (235 ok)"),
        (MessageSent(1, SendResult("a@x.org", ("b@x.org", "c@x.org"), accepted={"b@x.org": REPLY},
                                   refused={"c@x.org": Reply(550, ("no",))}, reply=REPLY, outcome=Outcome.DELIVERED)),
         "message 1 delivered: accepted for b@x.org; refused for c@x.org (550 no); final reply (250 2.0.0 queued)"),
        (MessageSent(2, SendResult("a@x.org", ("b@x.org",), outcome=Outcome.NOT_SENT)), "message 2 not sent"),
        (CommandDone(3, "NOOP", Reply(250, ("ok",))), "NOOP answered (250 ok)"),
        (Closed(Reply(221, ("bye",))), "the session is over: 221 to QUIT"),
        (Closed(None, AuthenticationError(Reply(535, ("no",)))),
         "the session is over: it failed (AuthenticationError)"),
    ],
)
def test_events_in_words(event: object, words: str) -> None:
    assert event_words(event) == words  # type: ignore[arg-type]
    assert "Reply(" not in words and "mappingproxy" not in words


def test_the_trace_records_words_beside_the_reprs() -> None:
    step = stepper(trace=True)
    step.feed(b"220 mx\r\n")
    step.feed(b"250-mx\r\n250 8BITMIME\r\n")
    ready = step.trace[-1]
    assert ready.events[0].startswith("SessionReady(") and len(ready.words) == len(ready.events)
    assert ready.words == ("the session is open (not encrypted); the server offers 8BITMIME",)
