"""Regressions found by review: 452 retry rounds, LMTP retries, queueing after errors, RSET refused,
server-controlled EHLO values, duplicate recipients, over-long AUTH responses."""

from __future__ import annotations

import pytest
from sansio_helpers import ehlo, ready, stepper

from smtp_fsm import (
    AuthenticationError,
    LocalProtocolError,
    MessageSent,
    RecipientsRefused,
    SMTPReplyError,
)

GREETING = b"220 mx.example ESMTP\r\n"


def only_result(step):  # type: ignore[no-untyped-def]
    (event,) = step.of(MessageSent)
    return event.result


@pytest.mark.parametrize(
    ("round_two", "failure_code"),
    [
        ([b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"451 4.3.0 temporary\r\n"], 451),  # final refused
        ([b"451 4.3.0 sender later\r\n"], 451),  # MAIL refused in the retry round
    ],
)
def test_a_failed_452_retry_round_keeps_the_first_delivery(round_two: list[bytes], failure_code: int) -> None:
    h = ready()
    h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    for data in (b"250 ok\r\n", b"250 ok\r\n", b"452 4.5.3 later\r\n", b"354 go\r\n"):
        h.feed(data)
    step = h.feed(b"250 2.0.0 queued as R1\r\n")
    assert step.sent.startswith(b"MAIL FROM:<a@x.org>\r\n")  # the retry round (no pipelining: one by one)
    for data in round_two[:-1]:
        h.feed(data)
    step = h.feed(round_two[-1])
    if failure_code == 451 and len(round_two) == 1:
        step = h.feed(b"250 reset\r\n") if step.sent == b"RSET\r\n" else step
    result = only_result(step)
    assert result.error is None and result.ok
    assert list(result.accepted) == ["b@y.org"]
    assert result.refused["c@y.org"].code == failure_code
    assert result.reply.text == "2.0.0 queued as R1"


def test_lmtp_retry_does_not_depend_on_the_order_of_delivery_replies() -> None:
    for deliveries in ([b"250 b delivered\r\n", b"552 d over quota\r\n"], [b"552 b over quota\r\n", b"250 d ok\r\n"]):
        h = ready("PIPELINING", lmtp=True)
        h.session.sendmail("a@x.org", ["b@y.org", "c@y.org", "d@y.org"], b"hi\r\n")
        h.pending()
        h.feed(b"250 ok\r\n250 ok\r\n452 later\r\n250 ok\r\n354 go\r\n")
        step = h.feed(b"".join(deliveries))
        assert step.sent.startswith(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<c@y.org>\r\n"), deliveries


def test_send_many_with_one_invalid_item_queues_nothing() -> None:
    h = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        h.session.send_many([("a@x.org", ["b@y.org"], b"good\r\n"), ("a@x.org", ["bad\r\n@y.org"], b"bad\r\n")])
    assert h.session.data_to_send() == b""
    assert h.session.state == "ready"


def test_no_work_is_accepted_once_the_session_has_ended() -> None:
    h = stepper(username="u", password="p", loopback=True)
    h.feed(GREETING)
    h.feed(ehlo("AUTH PLAIN"))
    step = h.feed(b"535 5.7.8 bad credentials\r\n")
    assert isinstance(step.error, AuthenticationError) and step.state == "quit"
    with pytest.raises(AuthenticationError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")


def test_rset_refused_after_an_abandoned_message_still_reports_it() -> None:
    h = ready("PIPELINING")
    h.session.send_many([("a@x.org", ["b@y.org"], b"one\r\n"), ("a@x.org", ["c@y.org"], b"two\r\n")])
    h.pending()
    h.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")
    step = h.feed(b"250 q1\r\n250 ok\r\n550 no such user\r\n554 no valid recipients\r\n")
    assert step.sent == b"RSET\r\n"
    step = h.feed(b"500 what?\r\n")
    results = step.results
    assert isinstance(results[2].error, RecipientsRefused)
    assert isinstance(step.error, SMTPReplyError) and step.sent == b"QUIT\r\n"


@pytest.mark.parametrize("size", ["²", "1e3", "-5", "12 34"])
def test_a_strange_size_keyword_means_no_limit(size: str) -> None:
    h = stepper()
    h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")
    h.pending()
    h.feed(GREETING)
    step = h.feed(f"250-mx.example\r\n250 SIZE {size}\r\n".encode())
    assert step.sent.startswith(b"MAIL FROM:<a@x.org>")
    assert h.session.capabilities.max_size is None


def test_duplicate_recipients_are_sent_once() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org", "b@y.org", "c@y.org"], b"hi\r\n")
    step = h.pending()
    assert step.sent.count(b"RCPT TO:<b@y.org>") == 1
    step = h.feed(b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n")
    result = only_result(h.feed(b"250 queued\r\n"))
    assert list(result.accepted) == ["b@y.org"] and list(result.refused) == ["c@y.org"]


def test_an_auth_response_longer_than_rfc_4954_allows_is_refused_up_front() -> None:
    with pytest.raises(LocalProtocolError, match="12288"):
        stepper(username="u", password="p" * 10000, loopback=True)


def test_a_refused_middle_chunk_is_followed_by_rset_even_if_last_gets_250() -> None:
    h = ready("PIPELINING", "CHUNKING", chunk_size=4)
    h.session.sendmail("a@x.org", ["b@y.org"], b"abcdefgh\r\n")
    step = h.pending()
    assert step.sent.count(b"BDAT ") == 3
    step = h.feed(b"250 ok\r\n250 ok\r\n250 4 octets\r\n554 5.6.0 chunk refused\r\n250 2.0.0 queued\r\n")
    assert step.sent == b"RSET\r\n"
    result = only_result(h.feed(b"250 reset\r\n"))
    assert result.error is not None and result.error.code == 554
