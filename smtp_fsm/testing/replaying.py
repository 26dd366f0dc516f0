"""Replay a transcript against the engine, and step a session reply by reply in tests.

``replay`` feeds a transcript's ``S:`` lines to a :class:`ClientSession` one
reply at a time and checks that the engine writes exactly the ``C:`` lines
(``<credentials>`` in the transcript stands for any credential).  A mismatch
raises :class:`ReplayMismatch`, an ``AssertionError`` naming the step, the
transcript line, the state and the expected and actual bytes.

``SessionStepper`` is the hand-held version: give the session work, then
``step.reply("250 OK")`` and look at what it sent and where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from ..errors import SMTPError
from ..events import NEED_DATA, Closed, Event, MessageSent, StartTLS
from ..protocol import table
from ..results import SendResult
from ..session import ClientSession
from ..trace import TraceStep
from ..trace import hide_credentials as trace_hide
from ..transcript import Match, Transcript, TranscriptLine, match_lines, parse_transcript

#: What the session gets before the first reply when ``replay`` is given no work.
Work = Callable[[ClientSession], object]
SessionFactory = Callable[[], ClientSession]


def _lines_of(data: bytes, limit: int = 8) -> str:
    pieces = data.split(b"\r\n")
    lines = [repr(piece + b"\r\n") for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(repr(pieces[-1]))
    if not lines:
        return "    (nothing)"
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... {len(lines) - limit} more line(s)")
    return "\n".join("    " + line for line in shown)


def hide_credentials(data: bytes, state: str) -> bytes:
    """``data`` as a trace would show it, written in ``state`` (the AUTH states answer challenges)."""
    return trace_hide(data, state in (table.AUTH, table.AUTH_RESPONSE))


class ReplayMismatch(AssertionError):
    """The engine did not write what the transcript says.

    ``step`` is the 1-based server step after which it happened (0: before
    any reply), ``lineno`` the transcript line, ``state`` the session's state,
    ``expected`` and ``actual`` the client bytes from the first difference.
    """

    def __init__(self, reason: str, step: int, lineno: int, state: str, expected: bytes, actual: bytes) -> None:
        self.step = step
        self.lineno = lineno
        self.state = state
        self.expected = expected
        self.actual = actual
        where = f"step {step}" + (f" (transcript line {lineno})" if lineno else "")
        super().__init__(
            f"{where}, state {state!r}: {reason}\n  expected:\n{_lines_of(expected)}\n  actual:\n{_lines_of(actual)}"
        )


# -- driving a session without I/O ---------------------------------------------------

#: Events taken in one turn before the pump gives up: an engine's queue holds what a read or a
#: call settled, so a turn this long means a session that never waits (a bug, reported as such).
_MAX_EVENTS_PER_TURN = 100_000


class _Pump:
    """The event loop of ``replay`` and ``SessionStepper``: one turn of a driver, without sockets.

    A turn (``drain``) is what a driver does after feeding the engine or giving it work: write
    ``data_to_send()``, then read ``next_event()`` until the engine needs data (``NEED_DATA``)
    or has ended (``Closed``).  The error that ends a session is raised by ``next_event`` once,
    just before its ``Closed``: it is recorded among the events, in order, not raised.  A
    ``StartTLS`` is answered at once with ``tls_established()`` only when ``auto_tls`` is set
    (replay); otherwise the caller answers it, as a driver would after its handshake.
    """

    def __init__(self, session: ClientSession, auto_tls: bool) -> None:
        self.session = session
        self.auto_tls = auto_tls
        #: Everything ``next_event`` gave, in order: events, and the ending error where it was raised.
        self.events: list[Event | SMTPError] = []
        self.error: SMTPError | None = None
        self.closed = False
        #: The states seen after each feed (what ``states`` reports when the session keeps no trace).
        self.states: list[str] = [session.state]

    def _observe(self) -> None:
        if self.session.state != self.states[-1]:
            self.states.append(self.session.state)

    def drain(self) -> bytes:
        """One turn: the bytes the engine wants written; its events are appended to ``events``."""
        session = self.session
        # Always asked, even once the session has ended: what it hands out then (nothing, by the
        # life cycle) is this turn's to show, so a test sees bytes written too late where they are.
        out = [session.data_to_send()]
        if self.closed:  # next_event would return the same Closed forever: nothing more to ask
            return out[0]
        for _ in range(_MAX_EVENTS_PER_TURN):
            try:
                event = session.next_event()
            except SMTPError as exc:  # the ending error, raised once: its Closed comes next
                self.error = exc
                self.events.append(exc)
                continue
            if event is NEED_DATA:  # the engine waits for the server
                break
            self.events.append(event)
            if isinstance(event, Closed):  # the end: nothing is written after it
                self.closed = True
                break
            if isinstance(event, StartTLS) and self.auto_tls:  # replay's handshake always succeeds
                session.tls_established()
                self._observe()
            # A driver writes every turn: what an event's answer queued (the EHLO after TLS) goes now.
            out.append(session.data_to_send())
        else:
            raise AssertionError(f"next_event() gave {_MAX_EVENTS_PER_TURN} events in one turn "
                                 f"without NEED_DATA or Closed (state {session.state!r})")
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        """Feed server bytes (``b""``: the server closed), then take a turn."""
        self.session.receive_data(data)  # (once the session has ended, the engine ignores it)
        self._observe()
        return self.drain()


def _states(steps: Sequence[TraceStep], initial: str) -> list[str]:
    states = [steps[0].state_before if steps else initial]
    for step in steps:
        for state in (step.state_before, step.state_after):
            if state != states[-1]:
                states.append(state)
    return states


@dataclass
class ReplayResult:
    """What a replay went through: the events (errors included), the states, the trace."""

    events: list[Event | SMTPError]
    states: list[str]
    trace: list[TraceStep]
    sent: bytes
    error: SMTPError | None = None
    session: ClientSession | None = field(default=None, repr=False)

    @property
    def final_state(self) -> str:
        """The state the session ended in."""
        return self.states[-1]


#: The EHLO name of a default session when the transcript shows none (it ends before EHLO).
_NO_GREETING_NAME = "[127.0.0.1]"


def _default_session(transcript: Transcript) -> ClientSession:
    """A session whose EHLO/LHLO name is the one the transcript's first client line uses."""
    for exchange in transcript:
        for line in exchange.client:
            verb, _, name = line.data.decode("utf-8", "replace").strip().partition(" ")
            if verb.upper() in ("EHLO", "HELO", "LHLO") and name:
                return ClientSession(local_hostname=name.strip(), lmtp=verb.upper() == "LHLO", trace=True)
            break
    return ClientSession(local_hostname=_NO_GREETING_NAME, trace=True)


def replay(
    transcript: Transcript | str,
    session_factory: SessionFactory | ClientSession | None = None,
    work: Work | None = None,
    *,
    auto_tls: bool = True,
) -> ReplayResult:
    """Feed the transcript's server lines to a session and assert it writes exactly the client lines.

    ``session_factory`` is a ``ClientSession`` or a callable making one; by
    default a session with the EHLO name the transcript uses.  ``work`` is
    called with the session before the first reply to queue what it should do
    (``lambda s: s.sendmail(...)``); by default it queues only ``quit()``.
    When the engine asks for a TLS handshake, replay reports it done
    (``auto_tls``).  Errors that end the session are returned in the result,
    not raised: a transcript may well end in a 421.
    """
    script = parse_transcript(transcript) if isinstance(transcript, str) else transcript
    if isinstance(session_factory, ClientSession):
        session = session_factory
    elif session_factory is not None:
        session = session_factory()
    else:
        session = _default_session(script)
    (work or (lambda s: s.quit()))(session)
    pump = _Pump(session, auto_tls)
    sent: list[bytes] = []
    pending = pump.drain()
    step, lineno = 0, 0
    state_at_step = session.state
    for exchange in script:
        for chunk in exchange.chunks:
            step, lineno, state_at_step = chunk.step, chunk.lineno, session.state
            if session.state in table.FINAL_STATES and not chunk.close:
                raise ReplayMismatch(
                    f"the session already ended ({pump.error or 'closed'}) but the transcript goes on with "
                    f"{chunk.data!r}", step, lineno, session.state, exchange.client_bytes, pending)
            pending += pump.feed(b"" if chunk.close else chunk.data)
            found = match_lines(exchange.client, pending)
            if found.status == "mismatch":
                _mismatch(found, exchange.client, pending, step, lineno, state_at_step, session.state)
        found = match_lines(exchange.client, pending)
        if found.status != "ok":
            reason = "the client wrote less than the transcript shows"
            if found.status == "mismatch":
                _mismatch(found, exchange.client, pending, step, lineno, state_at_step, session.state)
            line = exchange.client[found.index]
            raise ReplayMismatch(f"{reason} (transcript line {line.lineno} not written)", step, lineno,
                                 session.state, b"".join(x.data for x in exchange.client[found.index:]),
                                 hide_credentials(pending[found.offset :], state_at_step))
        if len(pending) > found.consumed:
            raise ReplayMismatch("the client wrote more than the transcript shows", step, lineno, session.state,
                                 b"", hide_credentials(pending[found.consumed :], state_at_step))
        sent.append(pending)
        pending = b""
    # A session with a trace gives every state it passed through; without one, those seen after each feed.
    steps = list(session.trace or [])
    states = _states(steps, session.state) if session.trace is not None else pump.states
    return ReplayResult(pump.events, states, steps, b"".join(sent), pump.error, session)


def _mismatch(found: Match, expected: Sequence[TranscriptLine], actual: bytes, step: int, lineno: int,
              state_before: str, state: str) -> None:
    line = expected[found.index]
    raise ReplayMismatch(
        f"the client wrote something else than transcript line {line.lineno} (state before the reply: "
        f"{state_before!r})", step, lineno, state, b"".join(x.data for x in expected[found.index :]),
        hide_credentials(actual[found.offset :], state_before))


# -- the stepper -------------------------------------------------------------------------

_E = TypeVar("_E", bound="Event | SMTPError")


class Stepped(NamedTuple):
    """What one step did: the bytes the engine wrote, its state after, the events it produced.

    ``events`` holds what ``next_event`` gave in order, the error that ended the session
    included where it was raised; ``errors``, ``error``, ``of`` and ``results`` pick from it.
    """

    sent: bytes
    state: str
    events: tuple[Event | SMTPError, ...]

    @property
    def errors(self) -> tuple[SMTPError, ...]:
        """The errors among the events: the one that ended the session, when it ended in this step."""
        return self.of(SMTPError)

    @property
    def error(self) -> SMTPError:
        """The error this step raised; an ``AssertionError`` unless there is exactly one."""
        errors = self.errors
        if len(errors) != 1:
            raise AssertionError(f"expected one error in this step, got {errors!r}")
        return errors[0]

    def of(self, kind: type[_E]) -> tuple[_E, ...]:
        """The events of class ``kind``, in order (``of(Event)``: all but the error)."""
        return tuple(event for event in self.events if isinstance(event, kind))

    @property
    def results(self) -> dict[int, SendResult]:
        """The messages finished in this step: each ``MessageSent``'s result by its ticket."""
        return {event.ticket: event.result for event in self.of(MessageSent)}


class SessionStepper:
    """Drive a ``ClientSession`` by hand, one server reply at a time.

    >>> step = SessionStepper(local_hostname="client.example")
    >>> step.session.sendmail("a@example.org", ["b@example.net"], b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
    1
    >>> step.reply("220 mx.example ESMTP").sent
    b'EHLO client.example\\r\\n'

    ``reply`` takes one or more lines (str or bytes; CRLF is added to each
    line that lacks it).  Work queued on ``session`` in state ready is written
    at once: ``pending()`` collects it.  Errors that end the session do not
    raise: they are in ``events`` and ``error``.  A ``StartTLS`` event is not
    answered: call ``tls_established()`` as a driver would after its handshake.
    """

    def __init__(self, session: ClientSession | None = None, **session_options: object) -> None:
        if session is None:
            session_options.setdefault("trace", True)
            session = ClientSession(**session_options)  # type: ignore[arg-type]
        elif session_options:
            raise TypeError("give either a session or options for a new one, not both")
        self.session = session
        self._pump = _Pump(session, auto_tls=False)
        self._sent: list[bytes] = []

    @property
    def state(self) -> str:
        """The session's state now."""
        return self.session.state

    @property
    def sent(self) -> bytes:
        """Everything the engine has written so far."""
        return b"".join(self._sent)

    @property
    def events(self) -> list[Event | SMTPError]:
        """Every event so far (errors that ended the session included)."""
        return list(self._pump.events)

    @property
    def error(self) -> SMTPError | None:
        """The error that ended the session, or None."""
        return self._pump.error

    @property
    def trace(self) -> list[TraceStep]:
        """The steps recorded so far."""
        return list(self.session.trace or [])

    def reply(self, *lines: str | bytes) -> Stepped:
        """Feed one reply (one or more lines); return what the engine did."""
        data = b"".join(_line_bytes(line) for line in lines)
        return self.feed(data)

    def feed(self, data: bytes) -> Stepped:
        """Feed raw bytes exactly as given (no CRLF added); ``b""`` is the server closing."""
        self.session.receive_data(data)
        return self.pending()

    def close(self) -> Stepped:
        """The server closes the connection."""
        return self.feed(b"")

    def tls_established(self) -> Stepped:
        """Report the TLS handshake done (after a ``StartTLS`` event)."""
        self.session.tls_established()
        return self.pending()

    def pending(self) -> Stepped:
        """Collect what happened without a reply: what work queued on ``session`` wrote (in state
        ready it goes out at once), or what ``session.close()`` settled."""
        first = len(self._pump.events)
        out = self._pump.drain()
        self._sent.append(out)
        return Stepped(out, self.session.state, tuple(self._pump.events[first:]))


def _line_bytes(line: str | bytes) -> bytes:
    data = line.encode("utf-8") if isinstance(line, str) else line
    return data if data.endswith(b"\r\n") else data + b"\r\n"


__all__ = [
    "Match",
    "ReplayMismatch",
    "ReplayResult",
    "SessionStepper",
    "Stepped",
    "hide_credentials",
    "match_lines",
    "replay",
]
