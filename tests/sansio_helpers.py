"""Helpers for the sans-IO engine tests: sessions driven by the shipped ``SessionStepper``."""

from __future__ import annotations

from typing import Any

from smtp_fsm import ClientSession, SessionReady
from smtp_fsm.testing import SessionStepper

#: The EHLO name every helper session uses, so expected bytes can be written out in full.
CLIENT = "client.example"
GREETING = b"220 mx.example ESMTP\r\n"


def reply(code: int, *lines: str) -> bytes:
    """A server reply on the wire: ``NNN-line`` ... ``NNN last``."""
    texts = lines or ("ok",)
    out = [f"{code}-{text}\r\n" for text in texts[:-1]]
    out.append(f"{code} {texts[-1]}\r\n")
    return "".join(out).encode("utf-8")


def ehlo(*keywords: str) -> bytes:
    """A 250 EHLO reply announcing ``keywords``."""
    return reply(250, "mx.example", *keywords)


def stepper(**options: Any) -> SessionStepper:
    """A stepper on a new ``ClientSession`` made with ``options`` (EHLO name ``CLIENT`` unless given).

    Each step (``feed``, ``pending`` after queuing work on ``.session``, ``tls_established``) returns a
    ``Stepped``: the bytes sent, the state after and the events, the error that ended the session
    among them (``errors``, ``error``, ``of(kind)`` and ``results`` pick from them).  A ``StartTLS``
    is not answered: the test calls ``tls_established()``.
    """
    options.setdefault("local_hostname", CLIENT)
    return SessionStepper(ClientSession(**options))


def ready(*keywords: str, **options: Any) -> SessionStepper:
    """A session past the greeting and EHLO (answered with ``keywords``), in state ``ready``."""
    h = stepper(**options)
    first = h.feed(GREETING)
    verb = b"LHLO" if options.get("lmtp") else b"EHLO"
    assert first.sent == verb + b" " + CLIENT.encode() + b"\r\n", first.sent
    step = h.feed(ehlo(*keywords))
    assert step.state == "ready", (step.state, step.errors)
    assert step.sent == b""
    assert len(step.of(SessionReady)) == 1
    return h


def data_terminators(wire: bytes) -> int:
    """How many times the end-of-data sequence appears in ``wire``."""
    return wire.count(b"\r\n.\r\n")


#: Every state in which the connection is open and a reply is awaited (or the session idles).
LIVE_STATES = (
    "greeting", "ehlo", "helo", "starttls", "tls_handshake", "auth", "auth_response", "auth_cancel",
    "ready", "mail", "rcpt", "data", "bdat", "content", "data_abort", "rset", "noop",
)


def drive_to(state: str) -> SessionStepper:
    """A session brought, by scripted server replies, into ``state``."""
    if state == "greeting":
        h = stepper()
    elif state in ("ehlo", "helo"):
        h = stepper()
        h.feed(GREETING)
        if state == "helo":
            h.feed(reply(502, "no EHLO"))
    elif state in ("starttls", "tls_handshake"):
        h = stepper()
        h.feed(GREETING)
        h.feed(ehlo("STARTTLS"))
        if state == "tls_handshake":
            h.feed(reply(220, "go ahead"))
    elif state in ("auth", "auth_response", "auth_cancel"):
        h = stepper(username="user", password="pw", loopback=True, auth_mechanism="LOGIN")
        h.feed(GREETING)
        h.feed(ehlo("AUTH LOGIN"))
        if state == "auth_response":
            h.feed(reply(334, "VXNlcm5hbWU6"))
        elif state == "auth_cancel":
            h.feed(reply(334, "not base64 !!"))
    elif state == "ready":
        h = ready()
    elif state in ("mail", "rcpt"):
        h = ready()
        h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
        h.pending()
        if state == "rcpt":
            h.feed(b"250 ok\r\n")
    elif state == "data":
        h = ready("PIPELINING")
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
        h.pending()
    elif state == "bdat":
        h = ready("CHUNKING", chunk_size=2)
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
        h.pending()
        h.feed(b"250 ok\r\n")
        h.feed(b"250 ok\r\n")
    elif state in ("content", "data_abort"):
        h = ready("PIPELINING")
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
        h.pending()
        rcpt = b"250 ok\r\n" if state == "content" else b"550 no such user\r\n"
        h.feed(b"250 ok\r\n" + rcpt + b"354 go ahead\r\n")
    elif state in ("rset", "noop", "quit"):
        h = ready()
        getattr(h.session, state)()
        h.pending()
    else:
        raise AssertionError(f"no script reaches {state!r}")
    assert h.state == state, (h.state, state)
    return h
