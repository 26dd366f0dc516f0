"""Helpers for the sans-IO engine tests: feed server bytes, collect (bytes sent, events, errors, state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtp_fsm import NEED_DATA, ClientSession, Closed, Event, MessageSent, SessionReady, SMTPError

#: The EHLO name every helper session uses, so expected bytes can be written out in full.
CLIENT = "client.example"
GREETING = b"220 mx.example ESMTP\r\n"
#: Bound on next_event() calls per drain: the engine never has more than a handful queued.
MAX_EVENTS = 100


def reply(code: int, *lines: str) -> bytes:
    """A server reply on the wire: ``NNN-line`` ... ``NNN last``."""
    texts = lines or ("ok",)
    out = [f"{code}-{text}\r\n" for text in texts[:-1]]
    out.append(f"{code} {texts[-1]}\r\n")
    return "".join(out).encode("utf-8")


def ehlo(*keywords: str) -> bytes:
    """A 250 EHLO reply announcing ``keywords``."""
    return reply(250, "mx.example", *keywords)


@dataclass
class Step:
    """What one feed produced."""

    sent: bytes
    events: list[Event] = field(default_factory=list)
    errors: list[SMTPError] = field(default_factory=list)
    state: str = ""

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    @property
    def error(self) -> SMTPError:
        assert len(self.errors) == 1, self.errors
        return self.errors[0]


class Harness:
    """A ClientSession plus the bookkeeping a test wants after each call."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("local_hostname", CLIENT)
        self.session = ClientSession(**options)

    @property
    def state(self) -> str:
        return self.session.state

    def collect(self) -> Step:
        """Take what the session wants to write and every pending event (errors recorded, not raised)."""
        step = Step(self.session.data_to_send())
        for _ in range(MAX_EVENTS):
            try:
                event = self.session.next_event()
            except SMTPError as exc:
                step.errors.append(exc)
                continue
            if event is NEED_DATA:
                break
            step.events.append(event)
            if isinstance(event, Closed):
                break
        else:
            raise AssertionError("next_event() never returned NEED_DATA")
        step.state = self.session.state
        return step

    def feed(self, data: bytes) -> Step:
        self.session.receive_data(data)
        return self.collect()

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Step]:
        """Call a session method (sendmail, quit, ...) and collect what it caused."""
        result = getattr(self.session, method)(*args, **kwargs)
        return result, self.collect()

    def results(self, step: Step) -> dict[int, Any]:
        return {event.ticket: event.result for event in step.of(MessageSent)}


def ready(*keywords: str, **options: Any) -> Harness:
    """A session past the greeting and EHLO (answered with ``keywords``), in state ``ready``."""
    harness = Harness(**options)
    first = harness.feed(GREETING)
    verb = b"LHLO" if options.get("lmtp") else b"EHLO"
    assert first.sent == verb + b" " + CLIENT.encode() + b"\r\n", first.sent
    step = harness.feed(ehlo(*keywords))
    assert step.state == "ready", (step.state, step.errors)
    assert step.sent == b""
    assert len(step.of(SessionReady)) == 1
    return harness


def data_terminators(wire: bytes) -> int:
    """How many times the end-of-data sequence appears in ``wire``."""
    return wire.count(b"\r\n.\r\n")


#: Every state in which the connection is open and a reply is awaited (or the session idles).
LIVE_STATES = (
    "greeting", "ehlo", "helo", "starttls", "tls_handshake", "auth", "auth_response", "auth_cancel",
    "ready", "mail", "rcpt", "data", "bdat", "content", "data_abort", "rset", "noop",
)


def drive_to(state: str) -> Harness:
    """A session brought, by scripted server replies, into ``state``."""
    if state == "greeting":
        harness = Harness()
    elif state in ("ehlo", "helo"):
        harness = Harness()
        harness.feed(GREETING)
        if state == "helo":
            harness.feed(reply(502, "no EHLO"))
    elif state in ("starttls", "tls_handshake"):
        harness = Harness()
        harness.feed(GREETING)
        harness.feed(ehlo("STARTTLS"))
        if state == "tls_handshake":
            harness.feed(reply(220, "go ahead"))
    elif state in ("auth", "auth_response", "auth_cancel"):
        harness = Harness(username="user", password="pw", loopback=True, auth_mechanism="LOGIN")
        harness.feed(GREETING)
        harness.feed(ehlo("AUTH LOGIN"))
        if state == "auth_response":
            harness.feed(reply(334, "VXNlcm5hbWU6"))
        elif state == "auth_cancel":
            harness.feed(reply(334, "not base64 !!"))
    elif state == "ready":
        harness = ready()
    elif state in ("mail", "rcpt"):
        harness = ready()
        harness.call("sendmail", "a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
        if state == "rcpt":
            harness.feed(b"250 ok\r\n")
    elif state == "data":
        harness = ready("PIPELINING")
        harness.call("sendmail", "a@x.org", ["b@y.org"], b"hi\r\n")
    elif state == "bdat":
        harness = ready("CHUNKING", chunk_size=2)
        harness.call("sendmail", "a@x.org", ["b@y.org"], b"hi\r\n")
        harness.feed(b"250 ok\r\n")
        harness.feed(b"250 ok\r\n")
    elif state in ("content", "data_abort"):
        harness = ready("PIPELINING")
        harness.call("sendmail", "a@x.org", ["b@y.org"], b"hi\r\n")
        rcpt = b"250 ok\r\n" if state == "content" else b"550 no such user\r\n"
        harness.feed(b"250 ok\r\n" + rcpt + b"354 go ahead\r\n")
    elif state in ("rset", "noop", "quit"):
        harness = ready()
        harness.call(state)
    else:
        raise AssertionError(f"no script reaches {state!r}")
    assert harness.state == state, (harness.state, state)
    return harness
