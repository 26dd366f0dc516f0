"""Robustness properties (hypothesis): whatever a server sends, the engine stays within its contract.

* only SMTPError subclasses are ever raised;
* no bytes are produced once the session is closed or failed;
* the bytes held for an unfinished reply stay bounded;
* cutting a good server byte stream anywhere changes nothing (events, states, output).

``python -m tests.fuzz`` runs the same properties for much longer.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtp_fsm import ClientSession, Closed, RemoteProtocolError, SMTPError
from smtp_fsm.protocol.table import FINAL_STATES, STATE_NAMES
from smtp_fsm.replies import MAX_LINE, MAX_LINES, ReplyParser
from smtp_fsm.session import END_OF_DATA, bytes_buffered
from smtp_fsm.testing import SessionStepper

BUFFER_BOUND = MAX_LINE * MAX_LINES + MAX_LINE
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies: sessions, work and server replies --------------------------------------

CODES = [220, 221, 235, 250, 251, 252, 334, 354, 421, 450, 451, 452, 454, 500, 501, 502, 503, 504, 530, 534,
         535, 538, 550, 551, 552, 553, 554, 555]
KEYWORDS = ["PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", "AUTH LOGIN", "AUTH=LOGIN", "CHUNKING",
            "SIZE 1000", "SIZE", "SIZE x", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "HELP"]

text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x24F, exclude_characters="\x7f"), max_size=30)
codes = st.one_of(st.sampled_from(CODES), st.integers(200, 599))


def reply_bytes(code: int, lines: list[str]) -> bytes:
    last = len(lines) - 1
    return "".join(f"{code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines)).encode()


plain_reply = st.builds(lambda code, line: reply_bytes(code, [line]), codes, text)
ehlo_reply = st.builds(lambda code, keys: reply_bytes(code, ["mx.example", *keys]), st.sampled_from([250, 250, 502]),
                       st.lists(st.sampled_from(KEYWORDS), max_size=6))
rich_ehlo_reply = st.builds(lambda keys: reply_bytes(250, ["mx.example", "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", *keys]),
                            st.lists(st.sampled_from(KEYWORDS), max_size=6))
challenge = st.builds(lambda data: b"334 " + base64.b64encode(data) + b"\r\n", st.binary(max_size=30))
broken = st.one_of(
    st.binary(max_size=40),  # anything at all
    st.just(b"250 bare LF\n"),
    st.builds(lambda n: b"250 " + b"x" * n + b"\r\n", st.sampled_from([MAX_LINE - 5, MAX_LINE - 4, MAX_LINE + 1])),
    st.builds(lambda n: b"250-x\r\n" * n + b"250 end\r\n", st.sampled_from([MAX_LINES - 1, MAX_LINES, MAX_LINES + 1])),
    st.just(b"250-first\r\n550 second\r\n"),  # the code changes inside a reply
    st.just(b"250\r\n"),
    st.just(b"334 not base64!\r\n"),
)
server_reply = st.one_of(plain_reply, plain_reply, ehlo_reply, challenge, broken)

MESSAGES: list[Any] = [b"Subject: a\r\n\r\nbody\r\n", "Subject: b\r\n\r\n.dot\r\nbare\nLF\r\n", b"", b"x" * 30]


def email_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "用户@例子.广告"
    msg["Subject"] = "你好"
    msg.set_content("你好\n")
    return msg


mail_item = st.tuples(st.just("mail"), st.integers(1, 3), st.integers(0, len(MESSAGES)))
other_item = st.tuples(st.sampled_from(["noop", "rset", "quit"]), st.just(0), st.just(0))
work_item = st.one_of(mail_item, mail_item, other_item)


@dataclass
class Config:
    options: dict[str, Any]


configs = st.builds(
    lambda pipelining, chunking, lmtp, starttls, encrypted, loopback, auth, chunk_size, quit_after: Config({
        "local_hostname": "client.example", "pipelining": pipelining, "chunking": chunking, "lmtp": lmtp,
        "starttls": starttls, "encrypted": encrypted, "loopback": loopback, "chunk_size": chunk_size,
        "quit_after": quit_after, "trace": True, **auth}),
    st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from(["opportunistic", "opportunistic", "required", "never"]),
    st.booleans(), st.sampled_from([True, True, False]),
    st.sampled_from([{}, {"username": "u", "password": "p"}, {"username": "u", "password": "p",
                     "auth_mechanism": "LOGIN"}, {"username": "u", "password": "p", "auth_mechanism": "CRAM-MD5"},
                     {"username": "u", "oauth_token": "t", "auth_mechanism": "XOAUTH2"}]),
    st.sampled_from([1 << 20, 7]),
    st.sampled_from([None] * 6 + ["banner", "ehlo", "tls", "auth", "mail", "rcpt"]),
)

# An operation: feed some replies (cut at random points), queue work, report TLS, or close.
operation = st.one_of(
    st.tuples(st.just("feed"), st.lists(server_reply, min_size=1, max_size=4), st.lists(st.integers(0, 400),
                                                                                      max_size=4)),
    st.tuples(st.just("feed"), st.lists(server_reply, min_size=1, max_size=4), st.lists(st.integers(0, 400),
                                                                                      max_size=4)),
    st.tuples(st.just("work"), work_item, st.just([])),
    st.tuples(st.just("tls"), st.just(()), st.just([])),
    st.tuples(st.just("close"), st.just(()), st.just([])),
)


def queue(session: ClientSession, item: tuple[str, int, int]) -> None:
    kind, count, which = item
    if kind == "mail":
        recipients = [f"r{i}@example.net" for i in range(count)]
        msg = email_message() if which == len(MESSAGES) else MESSAGES[which]
        session.sendmail("a@example.org", recipients, msg)
    else:
        getattr(session, kind)()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks) if b > a]


# -- the invariant walk ------------------------------------------------------------------------------------


class InvariantWalk:
    """Drives a session with the shipped ``SessionStepper`` and checks the invariants after every call."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.stepper = SessionStepper(session)  # answers no StartTLS: the walk says when TLS is up
        self.output: list[bytes] = []
        self.events: list[str] = []
        self._ended = False  # a call left the session in a final state
        self._closed = False  # Closed was handed out
        self._raised = 0

    def call(self, action: Any) -> None:
        session = self.session
        with contextlib.suppress(SMTPError):
            action()
        step = self.stepper.pending()
        if step.sent:
            assert not self._closed, f"bytes after Closed: {step.sent!r}"
            assert not self._ended, f"bytes after the session ended: {step.sent!r}"
            self.output.append(step.sent)
        for event in step.events:
            self.events.append(f"{type(event).__name__}: {event}" if isinstance(event, SMTPError) else repr(event))
        self._raised += len(step.errors)
        assert self._raised <= 1, f"next_event raised more than once: {self.events}"
        self._closed = self._closed or bool(step.of(Closed))
        assert session.state in STATE_NAMES
        buffered = bytes_buffered(session)
        assert buffered <= BUFFER_BOUND, f"{buffered} bytes buffered"
        if self._ended:
            assert session.state in FINAL_STATES, f"left a final state for {session.state!r}"
        if session.state in FINAL_STATES:
            self._ended = True


def run_operations(config: Config, initial: list[tuple[str, int, int]], ops: list[Any]) -> InvariantWalk:
    try:
        session = ClientSession(**config.options)
    except SMTPError:
        return InvariantWalk(ClientSession(local_hostname="client.example"))
    harness = InvariantWalk(session)
    for item in initial:
        harness.call(lambda item=item: queue(session, item))
    for kind, payload, points in ops:
        if kind == "feed":
            for piece in cut(b"".join(payload), points):
                harness.call(lambda piece=piece: session.receive_data(piece))
        elif kind == "work":
            harness.call(lambda payload=payload: queue(session, payload))
        elif kind == "tls":
            harness.call(session.tls_established)
        else:
            harness.call(lambda: session.receive_data(b""))
    return harness


@SETTINGS
@given(configs, st.lists(work_item, max_size=3), st.lists(operation, max_size=25))
def test_random_servers_never_break_the_engine(config, initial, ops):
    harness = run_operations(config, initial, ops)
    harness.session.close()


# Replies a server might plausibly give to the command the engine waits on: with these the random walk
# gets deep into the machine (transactions, AUTH, STARTTLS, LMTP, BDAT, 452 retries) before the random
# and broken replies strike.  (``awaiting`` names the command whose reply the engine waits on.)
def _pool(good: list[bytes], other: list[bytes]) -> Any:
    return st.sampled_from(good * 4 + other)


PLAUSIBLE: dict[str, Any] = {
    "greeting": _pool([b"220 mx ESMTP\r\n"], [b"554 go away\r\n"]),
    "EHLO": st.one_of(ehlo_reply, rich_ehlo_reply, rich_ehlo_reply, st.just(
        b"250-mx\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n250-PIPELINING\r\n250 CHUNKING\r\n")),
    "HELO": _pool([b"250 hi\r\n"], [b"501 no\r\n"]),
    "STARTTLS": _pool([b"220 go ahead\r\n"], [b"454 not now\r\n"]),
    "AUTH": st.one_of(challenge, _pool([b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"235 ok\r\n"],
                                       [b"535 no\r\n", b"334 not base64\r\n"])),
    "MAIL FROM": _pool([b"250 ok\r\n"], [b"550 no\r\n", b"452 full\r\n"]),
    "RCPT TO": _pool([b"250 ok\r\n", b"251 forwarded\r\n"], [b"550 no\r\n", b"452 too many\r\n"]),
    "BDAT": _pool([b"250 chunk\r\n"], [b"552 too big\r\n"]),
    "DATA": _pool([b"354 go\r\n"], [b"554 no\r\n", b"250 odd\r\n"]),
    END_OF_DATA: _pool([b"250 queued\r\n"], [b"452 later\r\n", b"554 no\r\n"]),
    "RSET": _pool([b"250 ok\r\n"], [b"500 what\r\n"]),
    "NOOP": _pool([b"250 ok\r\n"], [b"500 what\r\n"]),
    "QUIT": _pool([b"221 bye\r\n"], [b"250 what\r\n"]),
}
PLAUSIBLE["LHLO"] = PLAUSIBLE["EHLO"]


def plausible_for(session: ClientSession) -> Any:
    awaited = session.awaiting
    return PLAUSIBLE.get(awaited, plain_reply) if awaited else plain_reply


WALK = ["plausible"] * 24 + ["random", "broken", "work", "tls", "close"]


@SETTINGS
@given(configs, st.lists(work_item, min_size=1, max_size=3), st.data())
def test_random_walk_through_the_machine(config, initial, data):
    """Replies drawn for the command in flight (mostly plausible, sometimes wrong or broken), cut anywhere."""
    try:
        session = ClientSession(**config.options)
    except SMTPError:
        return
    harness = InvariantWalk(session)
    for item in initial:
        harness.call(lambda item=item: queue(session, item))
    for _ in range(40):
        move = data.draw(st.sampled_from(WALK))
        if move == "work":
            item = data.draw(work_item)
            harness.call(lambda item=item: queue(session, item))
            continue
        if move == "tls" or (session.state == "tls_handshake" and move == "plausible"):
            harness.call(session.tls_established)
            continue
        if move == "close":
            harness.call(lambda: session.receive_data(b""))
            break
        if move == "plausible":  # one reply for the state we are in (the next depends on what it does)
            replies = [data.draw(plausible_for(session))]
        else:
            replies = data.draw(st.lists(server_reply if move == "random" else broken, min_size=1, max_size=3))
        for piece in cut(b"".join(replies), data.draw(st.lists(st.integers(0, 300), max_size=3))):
            harness.call(lambda piece=piece: session.receive_data(piece))
        if session.state in FINAL_STATES:
            break
    session.close()


@SETTINGS
@given(st.lists(st.one_of(server_reply, st.binary(max_size=3000)), max_size=6), st.lists(st.integers(0, 5000),
                                                                                        max_size=8))
def test_reply_parser_is_bounded_and_raises_only_protocol_errors(replies, points):
    parser = ReplyParser()
    for piece in cut(b"".join(replies), points):
        parser.feed(piece)  # never raises: a broken stream is reported in parser.error
        assert parser.buffered <= BUFFER_BOUND
        if parser.error is not None:
            assert isinstance(parser.error, RemoteProtocolError)
            assert parser.feed(b"250 ok\r\n") == []
            return


# -- fragmentation: good streams cut anywhere give the same session ---------------------------------


def _body(n: int) -> bytes:
    return b"Subject: m%d\r\n\r\n" % n + b"line\r\n" * n


def _r(*lines: str) -> bytes:
    code = lines[-1][:3]
    return b"".join((f"{code}-{line[4:]}\r\n" if i < len(lines) - 1 else f"{line}\r\n").encode()
                    for i, line in enumerate(lines))


GOOD_STREAMS: dict[str, tuple[dict[str, Any], list[tuple[str, int, int]], list[list[bytes]]]] = {
    # name: (session options, work, segments of server bytes; the TLS handshake happens between segments)
    "pipelined, two messages, noop": (
        {}, [("mail", 2, 0), ("mail", 1, 1), ("noop", 0, 0), ("quit", 0, 0)],
        [[_r("220 mx ESMTP"), _r("250 mx", "250 PIPELINING", "250 8BITMIME", "250 SIZE 100000"),
          _r("250 ok"), _r("250 ok"), _r("550 no"), _r("354 go"), _r("250 queued 1"), _r("250 ok"), _r("250 ok"),
          _r("354 go"), _r("250 queued 2"), _r("250 noop"), _r("221 bye")]],
    ),
    "one by one, AUTH LOGIN": (
        {"loopback": True, "username": "u", "password": "p", "pipelining": False},
        [("mail", 1, 0), ("quit", 0, 0)],
        [[_r("220 mx"), _r("250 mx", "250 AUTH LOGIN"), _r("334 VXNlcm5hbWU6"), _r("334 UGFzc3dvcmQ6"),
          _r("235 ok"), _r("250 ok"), _r("250 ok"), _r("354 go"), _r("250 queued"), _r("221 bye")]],
    ),
    "STARTTLS then AUTH PLAIN": (
        {"starttls": "required", "username": "u", "password": "p"},
        [("mail", 1, 0), ("quit", 0, 0)],
        [[_r("220 mx"), _r("250 mx", "250 STARTTLS"), _r("220 go ahead")],
         [_r("250 mx", "250 AUTH PLAIN", "250 PIPELINING"), _r("235 ok"), _r("250 ok"), _r("250 ok"),
          _r("354 go"), _r("250 queued"), _r("221 bye")]],
    ),
    "LMTP, two recipients": (
        {"lmtp": True}, [("mail", 2, 0), ("quit", 0, 0)],
        [[_r("220 lmtp"), _r("250 lmtp", "250 PIPELINING"), _r("250 ok"), _r("250 ok"), _r("250 ok"),
          _r("354 go"), _r("250 r0 delivered"), _r("452 r1 full"), _r("221 bye")]],
    ),
    "CHUNKING, three chunks": (
        {"chunk_size": 7}, [("mail", 1, 3), ("quit", 0, 0)],
        [[_r("220 mx"), _r("250 mx", "250 CHUNKING", "250 PIPELINING"), _r("250 ok"), _r("250 ok"),
          _r("250 chunk"), _r("250 chunk"), _r("250 chunk"), _r("250 chunk"), _r("250 queued"), _r("221 bye")]],
    ),
    "HELO fallback": (
        {}, [("mail", 1, 0), ("quit", 0, 0)],
        [[_r("220 old"), _r("502 no EHLO"), _r("250 hi"), _r("250 ok"), _r("250 ok"), _r("354 go"),
          _r("250 queued"), _r("221 bye")]],
    ),
}


def run_stream(name: str, cuts: list[list[int]] | None, per_reply: bool = False) -> tuple[Any, ...]:
    """Feed a good stream: whole (``cuts`` None), cut at ``cuts`` (one list per segment), or reply by
    reply with each reply cut at ``cuts`` (``per_reply``: pieces never span two replies)."""
    options, work, segments = GOOD_STREAMS[name]
    session = ClientSession(local_hostname="client.example", trace=True, **options)
    harness = InvariantWalk(session)
    for item in work:
        harness.call(lambda item=item: queue(session, item))
    for index, segment in enumerate(segments):
        if index:
            harness.call(session.tls_established)
        if per_reply:
            pieces = [piece for n, reply in enumerate(segment)
                      for piece in cut(reply, cuts[n % len(cuts)] if cuts else [])]
        else:
            data = b"".join(segment)
            pieces = [data] if cuts is None else cut(data, cuts[index] if index < len(cuts) else [])
        for piece in pieces:
            harness.call(lambda piece=piece: session.receive_data(piece))
    return (b"".join(harness.output), harness.events, session.trace, session.state)


def test_good_streams_end_well_when_fed_reply_by_reply():
    """The fixed streams are right: fed one reply at a time, every session ends closed and without error."""
    for name, (options, work, segments) in GOOD_STREAMS.items():
        session = ClientSession(local_hostname="client.example", trace=True, **options)
        harness = InvariantWalk(session)
        for item in work:
            harness.call(lambda item=item, session=session: queue(session, item))
        for index, segment in enumerate(segments):
            if index:
                harness.call(session.tls_established)
            for reply in segment:
                harness.call(lambda reply=reply, session=session: session.receive_data(reply))
        assert session.state == "closed", (name, harness.events)
        assert not any("Error" in event.split("(")[0] for event in harness.events), (name, harness.events)


def rounds_of(name: str) -> list[list[bytes]]:
    """The stream's replies grouped by round trip: a round ends with a reply the client answers.

    A server can only answer what it has received, so the bytes of one read never reach past
    a reply after which the client writes something new; within a round they may be cut anywhere.
    """
    options, work, segments = GOOD_STREAMS[name]
    session = ClientSession(local_hostname="client.example", **options)
    harness = InvariantWalk(session)
    for item in work:
        harness.call(lambda item=item: queue(session, item))
    rounds: list[list[bytes]] = []
    for index, segment in enumerate(segments):
        if index:
            harness.call(session.tls_established)
        current: list[bytes] = []
        for reply in segment:
            before = len(harness.output)
            harness.call(lambda reply=reply: session.receive_data(reply))
            current.append(reply)
            if len(harness.output) > before:
                rounds.append(current)
                current = []
        if current:
            rounds.append(current)
        rounds.append([])  # the TLS boundary (or the end): never cut across it
    return rounds


def run_rounds(name: str, cuts: list[list[int]]) -> tuple[Any, ...]:
    options, work, _segments = GOOD_STREAMS[name]
    session = ClientSession(local_hostname="client.example", trace=True, **options)
    harness = InvariantWalk(session)
    for item in work:
        harness.call(lambda item=item: queue(session, item))
    for index, round_ in enumerate(rounds_of(name)):
        if not round_:
            if session.state == "tls_handshake":
                harness.call(session.tls_established)
            continue
        data = b"".join(round_)
        for piece in cut(data, cuts[index % len(cuts)] if cuts else []):
            harness.call(lambda piece=piece: session.receive_data(piece))
    return (b"".join(harness.output), harness.events, session.trace, session.state)


@SETTINGS
@given(st.sampled_from(sorted(GOOD_STREAMS)), st.lists(st.lists(st.integers(0, 2000), max_size=12), max_size=4))
def test_cutting_each_round_trip_anywhere_changes_nothing(name, cuts):
    """Replies that arrive together in one read act as if they came one by one."""
    assert run_rounds(name, cuts) == run_stream(name, [], per_reply=True)


@SETTINGS
@given(st.sampled_from(sorted(GOOD_STREAMS)), st.lists(st.lists(st.integers(0, 200), max_size=6), max_size=5))
def test_fragmenting_each_reply_changes_nothing(name, cuts):
    """TCP may split a reply anywhere: the pieces of each reply, fed in turn, act as the whole reply."""
    assert run_stream(name, cuts, per_reply=True) == run_stream(name, [], per_reply=True)


@SETTINGS
@given(st.sampled_from(sorted(GOOD_STREAMS)))
def test_one_byte_at_a_time_changes_nothing(name):
    every_byte = [list(range(2000))]
    assert run_stream(name, every_byte, per_reply=True) == run_stream(name, [], per_reply=True)


#: Bytes that break a stream (or, for the 421, end the session by the rules): each is put into a
#: good stream and must give the same session however the stream is then split.  (A valid reply
#: put there would be answered at once when fed alone: a server that answers ahead of the
#: client's writes is test_replies_to_commands_not_yet_written_are_unsolicited's business.)
MALFORMED_TAILS = [
    b"HELLO, not SMTP\r\n", b"250 bare LF\n", b"2x0 what\r\n", b"250-first\r\n251 changed\r\n",
    b"250 " + b"x" * (MAX_LINE + 5) + b"\r\n", b"250-" + b"x" * (MAX_LINE - 4) + b"\r\n250" + b"y" * MAX_LINE,
    b"\xff\xfe\x00\x01", b"250 a\rb\r\n", b"25", b"250-x\r\n" * (MAX_LINES + 1), b"421 4.4.2 going away\r\n",
]


def run_with_tail(name: str, where: int, tail: bytes, cuts: list[list[int]] | None) -> tuple[Any, ...]:
    """Feed the stream round by round with ``tail`` put before the last reply of round ``where``.

    Within a round the client writes nothing until its last reply (that is what a round is),
    so bytes put before that reply meet the same session whether the round comes whole
    (``cuts`` None), cut at ``cuts``, or a byte at a time.
    """
    options, work, _segments = GOOD_STREAMS[name]
    session = ClientSession(local_hostname="client.example", trace=True, **options)
    harness = InvariantWalk(session)
    for item in work:
        harness.call(lambda item=item: queue(session, item))
    rounds = rounds_of(name)
    filled = [index for index, round_ in enumerate(rounds) if round_]
    target = filled[where % len(filled)]
    for index, round_ in enumerate(rounds):
        if not round_:
            if session.state == "tls_handshake":
                harness.call(session.tls_established)
            continue
        if index == target:
            round_ = [*round_[:-1], tail, round_[-1]]
        data = b"".join(round_)
        pieces = [data] if cuts is None else cut(data, cuts[index % len(cuts)] if cuts else [])
        for piece in pieces:
            harness.call(lambda piece=piece: session.receive_data(piece))
    return (b"".join(harness.output), harness.events, session.trace, session.state)


@SETTINGS
@given(st.sampled_from(sorted(GOOD_STREAMS)), st.integers(0, 20), st.sampled_from(MALFORMED_TAILS),
       st.lists(st.lists(st.integers(0, 3000), max_size=12), min_size=1, max_size=4))
def test_malformed_tails_give_the_same_session_however_split(name, where, tail, cuts):
    """Replies before bad bytes are handled first (no 250 lost), then the same error ends the
    session in the same state, with the same bytes written, wherever TCP cut the stream."""
    whole = run_with_tail(name, where, tail, None)
    assert run_with_tail(name, where, tail, cuts) == whole
    assert run_with_tail(name, where, tail, [list(range(4000))]) == whole  # a byte at a time


def test_replies_to_commands_not_yet_written_are_unsolicited():
    """A server cannot answer what it has not received: replies that run ahead of the client's
    writes in one read (pre-answering, the STARTTLS-buffering family of attacks) end the session."""
    for work, replies in [
        (False, [b"220 mx\r\n", b"250 mx\r\n"]),
        (True, [b"220 mx\r\n", b"250 mx\r\n", b"250 ok\r\n"]),
    ]:
        split = ClientSession(local_hostname="client.example")
        whole = ClientSession(local_hostname="client.example")
        if work:
            split.noop()
            whole.noop()
        for reply in replies:
            split.receive_data(reply)
            split.data_to_send()
        assert split.state == "ready"
        whole.receive_data(b"".join(replies))
        assert whole.state == "failed"
        with pytest.raises(RemoteProtocolError, match="unsolicited"):
            whole.next_event()
