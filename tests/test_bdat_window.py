"""A window of pipelined BDAT transactions, sans-IO: round trips, and what each message comes to inside it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sansio_helpers import ready

from smtp_fsm import ClientSession, LocalProtocolError
from smtp_fsm.results import Outcome, SendResult
from smtp_fsm.testing import SessionStepper

OK = b"250 2.0.0 ok\r\n"
Answer = Callable[[int, bytes], bytes]  # (message number from 0, command line) -> the reply


def commands(out: bytes) -> list[bytes]:
    """The command lines in what the client wrote; a BDAT's chunk is skipped by its size."""
    found, pos = [], 0
    while pos < len(out):
        eol = out.index(b"\r\n", pos)
        line = out[pos:eol]
        pos = eol + 2
        found.append(line)
        if line.upper().startswith(b"BDAT "):
            pos += int(line.split()[1])
    return found


class Server:
    """Answers each write whole, as a server that reads it in one go: ``answer`` says each reply."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or (lambda message, line: OK)
        self.message = -1  # the transaction a MAIL opened, counted from 0
        self.writes = 0
        self.mails: list[bytes] = []

    def reply(self, out: bytes) -> bytes:
        self.writes += 1
        replies = []
        for line in commands(out):
            if line.startswith(b"MAIL"):
                self.message += 1
                self.mails.append(line)
            replies.append(self.answer(self.message, line))
        return b"".join(replies)


def run(step: SessionStepper, server: Server, first: bytes, limit: int = 200) -> dict[int, SendResult]:
    """Answer the client until it has nothing more to say (bounded); every message's result by ticket."""
    results: dict[int, SendResult] = {}
    out = first
    for _ in range(limit):
        if not out:
            return results
        done = step.feed(server.reply(out))
        results.update(done.results)
        out = done.sent
    raise AssertionError("the client never stopped writing")


def window(count: int, *, size: int = 1, **options: object) -> tuple[SessionStepper, list[int], bytes]:
    step = ready("PIPELINING", "CHUNKING", **options)
    tickets = [step.session.sendmail("a@example.org", [f"r{n}@example.org"], b"Subject: %d\r\n\r\n" % n + b"x" * size)
               for n in range(count)]
    return step, tickets, step.pending().sent


@pytest.mark.parametrize(("bdat_window", "writes"), [(1, 16), (4, 4), (8, 2), (16, 1), (64, 1)])
def test_round_trips_fall_with_the_window(bdat_window: int, writes: int) -> None:
    step, tickets, first = window(16, bdat_window=bdat_window)
    server = Server()
    results = run(step, server, first)
    assert sorted(results) == tickets and all(r.outcome is Outcome.DELIVERED for r in results.values())
    assert server.writes == writes  # one round trip per write: 16 / W of them
    assert len(server.mails) == 16  # each message once


def test_the_window_is_filled_again_as_each_final_reply_comes() -> None:
    step, tickets, first = window(6, bdat_window=3)
    assert commands(first).count(b"MAIL FROM:<a@example.org>") == 3
    # the first message's replies alone: one more message goes out behind the other two
    more = step.feed(OK * 3)
    assert commands(more.sent).count(b"MAIL FROM:<a@example.org>") == 1 and list(more.results) == [tickets[0]]


class TransactionServer(Server):
    """A server with a real transaction: one MAIL, its RCPTs, BDAT LAST delivers to them.  BDAT with no
    valid recipient is refused and the MAIL stays open: ``keep`` goes on taking RCPTs into it, ``poison``
    refuses everything with 503 until RSET.  ``delivered`` lists each recipient each time it got a copy."""

    def __init__(self, after_refusal: str) -> None:
        super().__init__()
        self.after_refusal = after_refusal
        self.sender: bytes | None = None
        self.rcpts: list[bytes] = []
        self.poisoned = False
        self.delivered: list[bytes] = []
        self.envelopes: list[tuple[bytes, bytes]] = []  # (sender, recipient) of each copy
        self.refused_rcpt: tuple[bytes, ...] = (b"<r1@",)
        self.nested_mail = 0
        self.answer = self._answer

    def _answer(self, message: int, line: bytes) -> bytes:
        verb = line[:4]
        if verb == b"RSET":
            self.sender, self.rcpts, self.poisoned = None, [], False
            return OK
        if self.poisoned:
            return b"503 5.5.1 Error: RSET first\r\n"
        if verb == b"MAIL":
            if self.sender is not None:
                self.nested_mail += 1
                return b"503 5.5.1 Error: nested MAIL command\r\n"
            self.sender = line
            return OK
        if verb == b"RCPT":
            if self.sender is None:
                return b"503 5.5.1 Error: need MAIL command\r\n"
            if line.split(b"TO:")[1].startswith(self.refused_rcpt):
                return b"550 5.1.1 no such user\r\n"
            self.rcpts.append(line.split(b"<")[1].rstrip(b">"))
            return OK
        if verb == b"BDAT":
            if self.sender is None:
                return b"503 5.5.1 Error: need MAIL command\r\n"
            if not self.rcpts:
                self.poisoned = self.after_refusal == "poison"
                return b"554 5.5.1 Error: no valid recipients\r\n"
            self.delivered.extend(self.rcpts)
            self.envelopes.extend((self.sender.split(b"<")[1].split(b">")[0], rcpt) for rcpt in self.rcpts)
            self.sender, self.rcpts = None, []
            return OK
        return OK


@pytest.mark.parametrize("after_refusal", ["keep", "poison"])
def test_a_refusal_inside_the_window_is_its_own_and_no_recipient_gets_two_copies(after_refusal: str) -> None:
    """Message 1's only recipient is refused, so its BDAT is too and the server keeps its MAIL open: the
    next message's pipelined MAIL gets 503.  Either the server takes its RCPT and content into the open
    transaction (``keep``: delivered, so never sent again) or refuses them too (``poison``: sent again after
    an RSET, never reported refused).  Each recipient gets exactly one copy."""
    step, tickets, first = window(4, bdat_window=4)
    server = TransactionServer(after_refusal)
    results = run(step, server, first)
    by_ticket = [results[t] for t in tickets]
    assert [r.outcome for r in by_ticket] == [Outcome.DELIVERED, Outcome.REFUSED, Outcome.DELIVERED,
                                             Outcome.DELIVERED]
    assert by_ticket[1].refused["r1@example.org"].code == 550
    assert sorted(server.delivered) == [b"r0@example.org", b"r2@example.org", b"r3@example.org"]
    assert [list(r.accepted) for r in by_ticket] == [["r0@example.org"], [], ["r2@example.org"], ["r3@example.org"]]
    assert len(server.mails) == (6 if after_refusal == "poison" else 4)  # poison: messages 2 and 3 went again


def test_a_message_is_never_taken_under_the_open_mail_of_another_sender() -> None:
    """Message 1's BDAT is refused (no valid recipient) and the server keeps its MAIL open, as Exim does:
    a message pipelined behind it would have its RCPT and content taken under message 1's MAIL.  With the
    same sender and parameters the copy is the same (SIZE aside); with another sender its bounces would go
    to the wrong address, so a message whose MAIL says otherwise waits until those in flight are answered."""
    step = ready("PIPELINING", "CHUNKING", "SIZE", bdat_window=8)
    senders = ["a@example.org", "a@example.org", "a@example.org", "b@example.org", "b@example.org", "c@example.org"]
    tickets = [step.session.sendmail(sender, [f"r{n}@example.org"], b"Subject: %d\r\n\r\n" % n + b"x" * n)
               for n, sender in enumerate(senders)]
    first = step.pending().sent
    mails = [line for line in commands(first) if line.startswith(b"MAIL")]
    assert [line.split(b" SIZE=")[0] for line in mails] == [b"MAIL FROM:<a@example.org>"] * 3
    assert len(set(mails)) == 3  # (their SIZE differs: the same envelope all the same)
    server = TransactionServer("keep")
    results = run(step, server, first)
    assert [results[t].outcome for t in tickets] == [Outcome.DELIVERED, Outcome.REFUSED, *[Outcome.DELIVERED] * 4]
    assert sorted(server.envelopes) == [(b"a@example.org", b"r0@example.org"), (b"a@example.org", b"r2@example.org"),
                                        (b"b@example.org", b"r3@example.org"), (b"b@example.org", b"r4@example.org"),
                                        (b"c@example.org", b"r5@example.org")]
    # the a's; the RSET after the refusal; then one at a time (the 503 showed the open transaction)
    assert server.writes == 5 and server.nested_mail == 1


def test_a_server_that_keeps_a_refused_transaction_open_gets_one_message_at_a_time(
        caplog: pytest.LogCaptureFixture) -> None:
    """Exim answers 503 to a MAIL behind a message whose BDAT it refused, and drops the connection at the
    fourth such protocol error: after the first, one message in flight, and a refused transaction is
    followed by an RSET before the next MAIL, as without a window."""
    step, tickets, first = window(12, bdat_window=4)
    server = TransactionServer("keep")
    server.refused_rcpt = (b"<r1@", b"<r5@", b"<r9@")
    with caplog.at_level(logging.INFO, logger="smtp_fsm"):
        results = run(step, server, first)
    assert [results[t].outcome for t in tickets] == [
        Outcome.REFUSED if n in (1, 5, 9) else Outcome.DELIVERED for n in range(12)]
    assert server.nested_mail == 1  # only the first refusal cost a 503
    assert step.session._model.window_limit == 1
    assert ["kept a refused transaction open" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.parametrize("cut", [b"421 4.3.2 going down\r\n", b""])
def test_a_421_or_a_close_inside_the_window_says_exactly_what_became_of_each(cut: bytes) -> None:
    step, tickets, _ = window(6, bdat_window=4)  # 4 in flight, 2 queued
    # message 0 delivered; message 1's MAIL and RCPT answered; then the end
    results = {**step.feed(OK * 3 + OK * 2 + cut).results}
    if not cut:
        results.update(step.feed(b"").results)
    assert sorted(results) == tickets
    outcomes = [results[t].outcome for t in tickets]
    # With the 421 in the same read, the message that message 0's reply let into the window never left
    # (its bytes were dropped before they were handed out); after a read of its own, it went: uncertain.
    refilled = Outcome.NOT_SENT if cut else Outcome.UNCERTAIN
    assert outcomes == [Outcome.DELIVERED, Outcome.UNCERTAIN, Outcome.UNCERTAIN, Outcome.UNCERTAIN,
                        refilled, Outcome.NOT_SENT]


def test_a_message_waiting_to_go_again_when_the_server_leaves_is_not_sent() -> None:
    step, tickets, _ = window(2, bdat_window=2)
    # message 0's BDAT refused (the transaction stays open), message 1's MAIL refused with 503: it waits
    # for the RSET to go again, and the server leaves first
    replies = OK + OK + b"554 5.7.1 content refused\r\n" + b"503 5.5.1 nested MAIL\r\n" + b"503 need MAIL\r\n" * 2
    done = step.feed(replies)
    assert done.sent == b"RSET\r\n"
    results = {**done.results, **step.feed(b"").results}
    assert results[tickets[0]].outcome is Outcome.REFUSED
    assert results[tickets[1]].outcome is Outcome.NOT_SENT and not results[tickets[1]].refused


class StrictServer(Server):
    """Refuses a command that came in the same write as one it must follow a reply of: a BDAT after its
    RCPT (RFC 3030 §2 read strictly), or a MAIL after a BDAT LAST (each BDAT group ends a round trip).
    It answers 503 then, and so keeps nothing of that transaction."""

    def __init__(self, after: bytes, then: bytes) -> None:
        super().__init__()
        self.after, self.then = after, then
        self.refusing = False

    def reply(self, out: bytes) -> bytes:
        self.writes += 1
        replies, seen_after = [], False
        for line in commands(out):
            if line.startswith(b"MAIL"):
                self.message += 1
                self.mails.append(line)
                self.refusing = False
            if line.startswith(self.then) and seen_after:
                self.refusing = True
            if line.startswith(self.after) and (self.after != b"BDAT" or b"LAST" in line):
                seen_after = True
            if line == b"RSET":
                self.refusing = False
            replies.append(b"503 5.5.1 Error: improper pipelining\r\n" if self.refusing else OK)
        return b"".join(replies)


def test_a_server_that_wants_bdat_after_the_rcpt_replies_gets_lockstep() -> None:
    """RFC 3030 §2 read strictly: a BDAT that came with its MAIL and RCPT is refused for the order.
    Every message goes again, one command at a time, and none is reported refused."""
    step, tickets, first = window(3, bdat_window=8)
    server = StrictServer(after=b"RCPT", then=b"BDAT")
    results = run(step, server, first)
    assert [results[t].outcome for t in tickets] == [Outcome.DELIVERED] * 3
    assert step.session._model.bdat_lockstep and step.session._model.window_limit == 1
    stored = server.mails[3:]  # after the first write: one message at a time, each once
    assert len(stored) == 3


def test_a_server_that_ends_each_group_at_bdat_gets_one_message_at_a_time() -> None:
    """A 503 to the MAIL that followed a delivered message's BDAT LAST: the window falls to 1."""
    step, tickets, first = window(4, bdat_window=4)
    server = StrictServer(after=b"BDAT", then=b"MAIL")
    results = run(step, server, first)
    assert [results[t].outcome for t in tickets] == [Outcome.DELIVERED] * 4
    assert step.session._model.window_limit == 1 and not step.session._model.bdat_lockstep
    assert len(server.mails) == 4 + 3  # the three refused for the order went again, one at a time


def test_the_window_option_is_checked() -> None:
    for bad in (0, 65, True, "8", 1.5):
        with pytest.raises(LocalProtocolError, match="bdat_window"):
            ClientSession(local_hostname="c.example", bdat_window=bad)  # type: ignore[arg-type]
    assert ClientSession(local_hostname="c.example", bdat_window=64)
