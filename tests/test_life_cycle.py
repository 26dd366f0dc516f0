"""Every way a session ends, walked call by call: the README's life-cycle table, as a test.

Each ending is driven sans-IO to the moment it happens; then the test records
exactly what ``next_event`` returns or raises, what ``data_to_send`` holds at
the raise, and what every call returns after ``Closed``.  A loop written from
the README (write, catch SMTPError once, stop at Closed) must end in each case.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sansio_helpers import CLIENT, GREETING, ehlo, reply

from smtp_fsm import (
    NEED_DATA,
    AuthenticationError,
    ClientSession,
    Closed,
    MessageSent,
    Outcome,
    RemoteProtocolError,
    ServerDisconnected,
    SessionReady,
    SMTPError,
    SMTPReplyError,
    SMTPTimeout,
    StartTLS,
    State,
    TLSError,
    TLSUnavailable,
)

MESSAGE = b"Subject: t\r\n\r\nbody\r\n"
QUIT = b"QUIT\r\n"


@dataclass(frozen=True)
class Ending:
    """How to drive a session to one ending, and what the README says happens then."""

    options: dict[str, object]
    #: Server bytes fed one piece at a time, then a caller action (or None) that causes the ending.
    feeds: tuple[bytes, ...]
    action: Callable[[ClientSession], None] | None
    raises: type[SMTPError] | None  # what next_event raises, once (None: nothing)
    courtesy_quit: bool  # QUIT is in data_to_send when the error is raised
    closing: bytes | None  # what the server says after the courtesy QUIT (None: Closed comes at once)
    state: State
    outcome: Outcome  # the queued message's


def _close_with(reason: BaseException | None) -> Callable[[ClientSession], None]:
    def act(session: ClientSession) -> None:
        session.close(reason)

    return act


def _quit(session: ClientSession) -> None:
    session.quit()


READY = (GREETING, ehlo("PIPELINING"))
ENDINGS = {
    "success, QUIT answered": Ending(
        {}, (*READY, reply(250, "ok") + reply(250, "ok") + reply(354, "go"), reply(250, "queued")), _quit,
        None, False, reply(221, "bye"), State.CLOSED, Outcome.DELIVERED),
    "QUIT, then the server closes without 221": Ending(
        {}, (*READY, reply(250, "ok") + reply(250, "ok") + reply(354, "go"), reply(250, "queued")), _quit,
        None, False, b"", State.CLOSED, Outcome.DELIVERED),
    "greeting refused": Ending(
        {}, (reply(554, "go away"),), None, SMTPReplyError, True, reply(221, "bye"), State.CLOSED,
        Outcome.NOT_SENT),
    "AUTH refused": Ending(
        {"username": "u", "password": "p", "loopback": True}, (GREETING, ehlo("AUTH PLAIN"), reply(535, "no")),
        None, AuthenticationError, True, reply(221, "bye"), State.CLOSED, Outcome.NOT_SENT),
    "TLS required, not offered": Ending(
        {"starttls": "required"}, (GREETING, ehlo("PIPELINING")), None, TLSUnavailable, True, b"",
        State.CLOSED, Outcome.NOT_SENT),
    "421 to MAIL": Ending(
        {"pipelining": False}, (*READY, reply(421, "4.3.2 shutting down")), None, ServerDisconnected, False,
        None, State.FAILED, Outcome.NOT_SENT),
    "the server closed": Ending(
        {}, (*READY, b""), None, ServerDisconnected, False, None, State.FAILED, Outcome.NOT_SENT),
    "a broken reply": Ending(
        {"pipelining": False}, (*READY, b"hello?\r\n"), None, RemoteProtocolError, False, None, State.FAILED,
        Outcome.NOT_SENT),
    "the content went out, then the server closed": Ending(
        {}, (*READY, reply(250, "ok") + reply(250, "ok") + reply(354, "go"), b""), None, ServerDisconnected,
        False, None, State.FAILED, Outcome.UNCERTAIN),
    "TLS handshake failed": Ending(
        {"starttls": "required"}, (GREETING, ehlo("STARTTLS"), reply(220, "go ahead")),
        _close_with(ssl.SSLError(1, "certificate verify failed")), TLSError, False, None, State.FAILED,
        Outcome.NOT_SENT),
    "close(reason): a timeout": Ending(
        {}, (GREETING,), _close_with(TimeoutError("no reply to EHLO")), SMTPTimeout, False, None, State.FAILED,
        Outcome.NOT_SENT),
    "close(): a clean local end": Ending(
        {}, (*READY,), _close_with(None), None, False, None, State.CLOSED, Outcome.NOT_SENT),
}


def drive(ending: Ending) -> tuple[ClientSession, list[object], bytes | None]:
    """Run the loop the README describes through the ending; return its record up to Closed.

    The record holds each ``next_event`` result (an event, the exception type raised, or
    "action" where the caller acted); the bytes are what the loop wrote between the input
    that caused the error and the raise (the courtesy QUIT, when there is one).
    """
    session = ClientSession(local_hostname=CLIENT, **ending.options)  # type: ignore[arg-type]
    session.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    record: list[object] = []
    at_raise: bytes | None = None
    feeds = list(ending.feeds)
    closing = [] if ending.closing is None else [ending.closing]
    written = b""
    for _ in range(50):  # bounded: every ending is a handful of calls
        written += session.data_to_send()
        try:
            event = session.next_event()
        except SMTPError as exc:
            record.append(type(exc))
            at_raise = written + session.data_to_send()
            continue
        if event is NEED_DATA:
            written = b""
            if feeds:
                session.receive_data(feeds.pop(0))
            elif ending.action is not None and "action" not in record:
                record.append("action")
                ending.action(session)
            elif closing:
                session.receive_data(closing.pop())
            else:
                raise AssertionError(f"the session waits for more, but the ending is over: {record}")
            continue
        record.append(event)
        if isinstance(event, Closed):
            return session, record, at_raise
    raise AssertionError(f"no Closed: {record}")


@pytest.mark.parametrize("name", ENDINGS)
def test_every_ending_raises_once_then_one_closed_for_good(name: str) -> None:
    ending = ENDINGS[name]
    session, record, at_raise = drive(ending)
    raised = [item for item in record if isinstance(item, type) and issubclass(item, SMTPError)]
    assert raised == ([ending.raises] if ending.raises else []), record
    closed = record[-1]
    assert isinstance(closed, Closed)
    # the message's MessageSent comes before the error, and the error just before Closed
    (sent,) = [item for item in record if isinstance(item, MessageSent)]
    assert sent.result.outcome is ending.outcome, (sent.result, record)
    if ending.raises:
        assert record.index(sent) < record.index(ending.raises) == len(record) - 2  # just before Closed
        assert isinstance(closed.error, ending.raises) and sent.result.error is closed.error
        assert at_raise == (QUIT if ending.courtesy_quit else b"")
    else:
        assert closed.error is None
    assert session.state is ending.state
    # After Closed: the same Closed, nothing to write, no more work, close() does nothing.
    assert all(session.next_event() is closed for _ in range(3))
    assert session.data_to_send() == b"" and session.awaiting is None
    session.close()
    assert session.next_event() is closed and session.state is ending.state
    with pytest.raises(SMTPError):
        session.noop()


@pytest.mark.parametrize("name", [name for name, ending in ENDINGS.items() if ending.courtesy_quit])
def test_after_a_refusal_closed_waits_for_the_courtesy_quit(name: str) -> None:
    """The session is in ``quit`` between the error and the server's answer to QUIT (NEED_DATA meanwhile)."""
    ending = ENDINGS[name]
    session = ClientSession(local_hostname=CLIENT, **ending.options)  # type: ignore[arg-type]
    for data in ending.feeds:
        session.data_to_send()
        session.receive_data(data)
    with pytest.raises(ending.raises or SMTPError):
        session.next_event()
    assert session.data_to_send() == QUIT and session.awaiting == "QUIT" and session.state is State.QUIT
    assert session.next_event() is NEED_DATA
    session.receive_data(reply(221, "bye"))
    closed = session.next_event()
    assert isinstance(closed, Closed) and closed.reply is not None and closed.reply.code == 221
    assert isinstance(closed.error, ending.raises or SMTPError)


def test_close_takes_only_exceptions() -> None:
    session = ClientSession(local_hostname=CLIENT)
    with pytest.raises(TypeError, match="exception or None"):
        session.close("timeout")  # type: ignore[arg-type]
    assert session.state is State.GREETING


def test_a_timeout_names_the_state_and_keeps_its_cause() -> None:
    session = ClientSession(local_hostname=CLIENT)
    session.receive_data(GREETING)
    cause = TimeoutError("no reply within 300 s")
    session.close(cause)
    with pytest.raises(SMTPTimeout, match="in state 'ehlo'") as info:
        session.next_event()
    assert info.value.__cause__ is cause


def test_a_reason_without_words_is_told_by_its_cause() -> None:
    """trio's BrokenResourceError() carries no message: what broke is its __cause__."""

    class BrokenResourceError(Exception):
        pass

    session = ClientSession(local_hostname=CLIENT, starttls="required")
    for data in (GREETING, ehlo("STARTTLS"), reply(220, "go ahead")):
        session.data_to_send()
        session.receive_data(data)
    broken = BrokenResourceError()
    broken.__cause__ = ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    session.close(broken)
    with pytest.raises(TLSError) as info:
        session.next_event()
    assert info.value.__cause__ is broken
    assert str(info.value).startswith("TLS handshake failed: BrokenResourceError: [SSL: CERTIFICATE_VERIFY_FAILED]")


def test_a_handshake_that_times_out_is_a_timeout() -> None:
    session = ClientSession(local_hostname=CLIENT, starttls="required")
    for data in (GREETING, ehlo("STARTTLS"), reply(220, "go ahead")):
        session.data_to_send()
        session.receive_data(data)
    next(e for e in iter(session.next_event, NEED_DATA) if isinstance(e, StartTLS))
    session.close(TimeoutError())
    with pytest.raises(SMTPTimeout, match="timed out in the TLS handshake: TimeoutError"):
        session.next_event()


@pytest.mark.parametrize("feeds", [(reply(554, "go away"), b""), (reply(554, "go away") + reply(221, "bye"),)])
def test_nothing_is_left_to_write_after_closed_even_when_the_close_came_before_the_write(
        feeds: tuple[bytes, ...]) -> None:
    """asyncio hands over data_received and eof_received in one turn: the unwritten QUIT is dropped."""
    session = ClientSession(local_hostname=CLIENT)
    for data in feeds:
        session.receive_data(data)
    with pytest.raises(SMTPReplyError):
        session.next_event()
    closed = session.next_event()
    assert isinstance(closed, Closed) and session.data_to_send() == b""


def test_quit_queued_then_the_server_closes_before_the_write() -> None:
    session = ClientSession(local_hostname=CLIENT)
    for data in (GREETING, ehlo()):
        session.data_to_send()
        session.receive_data(data)
    session.quit()
    session.receive_data(b"")
    assert isinstance(session.next_event(), SessionReady)
    assert isinstance(session.next_event(), Closed) and session.data_to_send() == b""
