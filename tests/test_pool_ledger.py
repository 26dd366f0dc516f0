"""The pool's ledger, sans-IO: what goes again, to whom, when, and what is final."""

from __future__ import annotations

import random
import ssl

import pytest

from smtp_fsm import AuthenticationError, LocalProtocolError, ServerDisconnected, SMTPConnectError
from smtp_fsm.errors import DataRefused, SenderRefused, SMTPReplyError, TLSError, TLSHandshakeTimeout, TLSUnavailable
from smtp_fsm.pool.ledger import Job, Ledger, RetryPolicy, fatal, job_for
from smtp_fsm.pool.pace import Pace
from smtp_fsm.pool.settings import PoolSettings
from smtp_fsm.replies import Reply
from smtp_fsm.results import Outcome, SendResult

OK = Reply(250, ("2.1.5 ok",))
LATER = Reply(451, ("4.3.0 try later",))
NEVER = Reply(550, ("5.1.1 no such user",))


def ledger(attempts: int = 3, **policy: object) -> Ledger:
    return Ledger(RetryPolicy(attempts=attempts, **policy), random.Random(1))  # type: ignore[arg-type]


def take_one(book: Ledger, now: float = 0.0) -> Job:
    (job,) = book.take(now, 10)
    return job


def delivered(job: Job, accepted: list[str], refused: dict[str, Reply] | None = None) -> SendResult:
    return SendResult(job.sender, job.pending, accepted=dict.fromkeys(accepted, OK), refused=refused or {},
                      reply=Reply(250, ("2.0.0 queued",)), outcome=Outcome.DELIVERED)


def test_a_recipient_answered_4xx_goes_again_alone_and_the_accepted_never_again() -> None:
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org", "b@x.org", "c@x.org"], b"hi"), "k"))
    job = take_one(book)
    assert book.settle([job], [delivered(job, ["a@x.org"], {"b@x.org": LATER, "c@x.org": NEVER})], None, 0.0) == []
    assert book.take(0.0, 10) == []  # not before its backoff
    due = book.next_due()
    assert due is not None and 0.5 <= due <= 1.0  # (backoff 1 s, jittered between half and all)
    again = take_one(book, due)
    assert again is job and again.pending == ("b@x.org",) and again.item == ("s@example.org", ("b@x.org",), b"hi")
    (finished,) = book.settle([again], [delivered(again, ["b@x.org"])], None, due)
    result = finished.result
    assert result.outcome is Outcome.DELIVERED and result.recipients == ("a@x.org", "b@x.org", "c@x.org")
    assert sorted(result.accepted) == ["a@x.org", "b@x.org"] and result.refused == {"c@x.org": NEVER}
    assert book.outstanding == 0 and book.idle()


def test_out_of_attempts_a_4xx_is_what_the_recipient_gets() -> None:
    book = ledger(attempts=2)
    book.add(job_for(("s@example.org", ["a@x.org"], b"hi"), 1))
    now = 0.0
    for _ in range(2):
        job = take_one(book, now)
        refused = SendResult(job.sender, job.pending, refused={"a@x.org": LATER},
                             error=LocalProtocolError("(all refused)"), outcome=Outcome.REFUSED)
        finished = book.settle([job], [refused], None, now)
        now = book.next_due() or now
    assert finished == [job] and job.attempts == 2
    assert job.result.outcome is Outcome.REFUSED and job.result.refused == {"a@x.org": LATER}


def test_a_5xx_is_final_at_once_a_4xx_sender_refusal_is_not() -> None:
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org"], b"1"), 1))
    book.add(job_for(("s@example.org", ["b@x.org"], b"2"), 2))
    first, second = book.take(0.0, 10)
    results = [SendResult(first.sender, first.pending, error=SenderRefused(NEVER, "s@example.org"),
                          outcome=Outcome.REFUSED),
               SendResult(second.sender, second.pending, error=DataRefused(LATER), outcome=Outcome.REFUSED)]
    assert book.settle([first, second], results, None, 0.0) == [first]
    assert first.result.outcome is Outcome.REFUSED and first.result.refused == {"a@x.org": NEVER}
    assert book.next_due() is not None  # the second waits for its backoff


def test_a_4xx_to_mail_sends_the_message_again_whatever_its_rcpts_were_answered() -> None:
    """After a refused MAIL the pipelined RCPTs get "503 need MAIL": those replies tell nothing of the
    recipients, the sender's 451 decides."""
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org", "b@x.org"], b"1"), 1))
    job = take_one(book)
    need_mail = Reply(503, ("5.5.1 need MAIL",))
    refused = SendResult(job.sender, job.pending, refused={"a@x.org": need_mail, "b@x.org": need_mail},
                         error=SenderRefused(LATER, "s@example.org"), outcome=Outcome.REFUSED)
    assert book.settle([job], [refused], None, 0.0) == []
    assert job.pending == ("a@x.org", "b@x.org") and job.result.refused == {"a@x.org": LATER, "b@x.org": LATER}


def test_a_message_cut_off_before_its_content_moves_at_once_then_backs_off() -> None:
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org"], b"1"), 1))
    book.add(job_for(("s@example.org", ["b@x.org"], b"2"), 2))
    batch = book.take(0.0, 10)
    cut = ServerDisconnected("server closed the connection")
    cut.uncertain, cut.unsent = (batch[0].item,), (batch[1].item,)
    (finished,) = book.settle(batch, None, cut, 0.0)
    assert finished is batch[0] and finished.result.outcome is Outcome.UNCERTAIN  # never sent again
    assert book.take(0.0, 10) == [batch[1]]  # at once, on another connection
    cut.uncertain, cut.unsent = (), (batch[1].item,)
    assert book.settle([batch[1]], None, cut, 0.0) == []
    assert book.take(0.0, 10) == [] and book.next_due() is not None  # a second time: after a backoff


def test_resend_uncertain_sends_an_uncertain_message_again() -> None:
    book = ledger(resend_uncertain=True)
    book.add(job_for(("s@example.org", ["a@x.org"], b"1"), 1))
    (job,) = book.take(0.0, 10)
    cut = ServerDisconnected("cut")
    cut.uncertain = (job.item,)
    assert book.settle([job], None, cut, 0.0) == []
    due = book.next_due()
    assert due is not None and take_one(book, due) is job


def test_a_refused_connect_waits_and_an_authentication_failure_ends_everything() -> None:
    book = ledger()
    for n in range(3):
        book.add(job_for(("s@example.org", [f"r{n}@x.org"], b"x"), n))
    batch = book.take(0.0, 1)
    assert book.connect_failed(batch, SMTPConnectError("connection refused"), 0.0) == []
    assert book.next_due() is not None  # backoff, not a spin
    batch = book.take(0.0, 1)
    failed = book.connect_failed(batch, AuthenticationError(Reply(535, ("5.7.8 no",))), 0.0)
    assert len(failed) == 3 and book.outstanding == 0 and book.fatal is not None
    assert all(job.result.outcome is Outcome.NOT_SENT and isinstance(job.result.error, AuthenticationError)
               for job in failed)


def test_a_batch_refused_locally_goes_again_one_by_one_at_no_cost() -> None:
    book = ledger()
    for n in range(3):
        book.add(job_for(("s@example.org", [f"r{n}@x.org"], b"x"), n))
    batch = book.take(0.0, 10)
    too_big = LocalProtocolError("message is 2000000 octets; the server accepts at most 1000000 (SIZE, RFC 1870)")
    assert book.refused_locally(batch, too_big) == []
    alone = [book.take(0.0, 10) for _ in range(3)]
    assert alone == [[job] for job in batch] and all(job.attempts == 1 for job in batch)
    (finished,) = book.refused_locally(alone[1], too_big)
    assert finished.result.outcome is Outcome.NOT_SENT and finished.result.error is too_big


def test_a_sending_that_never_reported_back_is_uncertain() -> None:
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org", "b@x.org"], b"x"), 1))
    batch = book.take(0.0, 10)
    (job,) = book.abandon(batch, ServerDisconnected("stopped"))
    assert job.result.outcome is Outcome.UNCERTAIN and book.outstanding == 0
    assert book.abandon(batch, ServerDisconnected("again")) == []  # (finished once)


def test_out_of_attempts_a_message_resent_for_being_uncertain_stays_uncertain() -> None:
    book = ledger(attempts=1, resend_uncertain=True)
    book.add(job_for(("s@example.org", ["a@x.org"], b"1"), 1))
    (job,) = book.take(0.0, 10)
    cut = ServerDisconnected("cut")
    cut.uncertain = (job.item,)
    assert book.settle([job], None, cut, 0.0) == [job]
    assert job.result.outcome is Outcome.UNCERTAIN  # (never "not_sent": it may have been delivered)


def test_a_delivery_after_a_4xx_is_clean() -> None:
    book = ledger()
    book.add(job_for(("s@example.org", ["a@x.org"], b"1"), 1))
    job = take_one(book)
    refused = SendResult(job.sender, job.pending, error=SenderRefused(LATER, "s@example.org"), outcome=Outcome.REFUSED)
    book.settle([job], [refused], None, 0.0)
    due = book.next_due()
    assert due is not None
    (finished,) = book.settle([take_one(book, due)], [delivered(job, ["a@x.org"])], None, due)
    assert finished.result.outcome is Outcome.DELIVERED and finished.result.error is None
    assert finished.result.refused == {}


def test_what_stops_the_pool_and_what_is_worth_another_connection() -> None:
    assert fatal(AuthenticationError(Reply(535, ("5.7.8 bad credentials",))))
    assert not fatal(AuthenticationError(Reply(454, ("4.7.0 try later",))))
    assert fatal(TLSUnavailable(Reply(250, ("mx",)), "STARTTLS required"))
    assert fatal(SMTPReplyError(Reply(554, ("5.7.1 go away",))))
    assert not fatal(SMTPReplyError(Reply(421, ("4.3.2 busy",))))
    assert not fatal(TLSHandshakeTimeout("handshake timed out"))
    cut = TLSError("handshake cut")
    assert not fatal(cut)
    refused = TLSError("certificate refused")
    refused.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert fatal(refused)


def test_the_backoff_doubles_up_to_its_ceiling_with_jitter() -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=5.0)
    rng = random.Random(7)
    for attempt, ceiling in ((2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (9, 5.0)):
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > ceiling / 10  # (jitter: not all alike)


def test_a_rate_is_kept_on_average_with_a_bounded_burst() -> None:
    pace = Pace(10, "max_rate")
    assert [pace.delay(1, 0.0) for _ in range(10)] == [0.0] * 10  # one second's burst
    assert pace.delay(1, 0.0) == pytest.approx(0.1)
    assert pace.delay(5, 1.0) == pytest.approx(0.0)  # (tokens came back at 10 per second)
    assert Pace(None, "max_rate").delay(10**6, 0.0) == 0.0
    with pytest.raises(LocalProtocolError, match="max_rate"):
        Pace(0, "max_rate")


def test_a_batch_leaves_half_the_pending_messages_ready_for_the_next() -> None:
    """``batch`` is at most max_pending / (2 x max_connections): while every connection sends one batch,
    each finds its next ready (a connection idling until the caller submits more cost a third of the
    throughput); max_messages_per_connection still caps it."""
    assert PoolSettings(max_connections=4, max_pending=1000, batch=32).batch_for(0) == 32
    assert PoolSettings(max_connections=16, max_pending=1000, batch=64).batch_for(0) == 31
    assert PoolSettings(max_connections=64, max_pending=100, batch=32).batch_for(0) == 1
    capped = PoolSettings(max_connections=16, max_pending=1000, batch=64, max_messages_per_connection=40)
    assert [capped.batch_for(sent) for sent in (0, 31, 40)] == [31, 9, 0]
