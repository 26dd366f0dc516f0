"""Stepping a session reply by reply in tests: the pump every loop here shares, and ``SessionStepper``.

``SessionStepper`` is the hand-held engine: give its session work, then feed
it replies one at a time (``reply``), or let it walk a transcript (``next``),
and look after each step at what it wrote, the state it is in, the table rows
that fired and the events; ``expect`` asserts all that in one call and, when it
fails, says what differs with the transcript lines around the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

from ..errors import SMTPError
from ..events import NEED_DATA, Closed, Event, MessageSent, StartTLS
from ..protocol import table
from ..protocol.table import TransitionSpec
from ..results import SendResult
from ..session import ClientSession
from ..trace import TraceStep
from ..transcript import Transcript, parse_transcript
from .checking import Ignore, TranscriptCursor

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
    >>> step.expect(state="ehlo", rows=["220"]).state
    'ehlo'

    ``reply`` takes one or more lines (str or bytes; CRLF is added to each
    line that lacks it).  Work queued on ``session`` in state ready is written
    at once: ``pending()`` collects it.  Errors that end the session do not
    raise: they are in ``events`` and ``error``.  A ``StartTLS`` event is not
    answered: call ``tls_established()`` as a driver would after its handshake.

    With ``transcript=`` the stepper walks it: ``next()`` feeds the next server
    chunk and checks that the session wrote what the transcript's client lines
    say (``ReplayMismatch`` when not; ``ignore`` as for ``replay``), answering
    ``StartTLS`` itself.  A new session records a trace, so ``rows`` can name the
    table rows each step took.
    """

    def __init__(self, session: ClientSession | None = None, *, transcript: Transcript | str | None = None,
                 ignore: Iterable[str] = (), **session_options: object) -> None:
        if session is None:
            session_options.setdefault("trace", True)
            session = ClientSession(**session_options)  # type: ignore[arg-type]
        elif session_options:
            raise TypeError("give either a session or options for a new one, not both")
        self.session = session
        script = parse_transcript(transcript) if isinstance(transcript, str) else transcript
        self.transcript = script
        self._cursor = TranscriptCursor(script, Ignore(ignore)) if script is not None else None
        self._pump = _Pump(session, auto_tls=script is not None)
        self._sent: list[bytes] = []
        self._last: Stepped | None = None
        self._last_rows: tuple[TransitionSpec, ...] = ()

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

    @property
    def last(self) -> Stepped:
        """What the last step did (``AssertionError`` before the first)."""
        if self._last is None:
            raise AssertionError("no step yet: feed a reply (reply, feed, next) or call pending() first")
        return self._last

    @property
    def rows(self) -> tuple[TransitionSpec, ...]:
        """The protocol table's rows the last step took, in order (``row.label``, ``row.trigger``,
        ``row.source``, ``row.dest``); empty for a session made without ``trace=True``."""
        return self._last_rows

    @property
    def remaining(self) -> int:
        """Server chunks of the transcript not fed yet (0 without a transcript)."""
        return 0 if self._cursor is None else self._cursor.remaining

    def reply(self, *lines: str | bytes) -> Stepped:
        """Feed one reply (one or more lines); return what the engine did."""
        data = b"".join(_line_bytes(line) for line in lines)
        return self.feed(data)

    def feed(self, data: bytes) -> Stepped:
        """Feed raw bytes exactly as given (no CRLF added); ``b""`` is the server closing."""
        self._by_hand()

        def turn() -> bytes:
            self.session.receive_data(data)
            return self._pump.drain()

        return self._record(turn)

    def close(self) -> Stepped:
        """The server closes the connection."""
        return self.feed(b"")

    def tls_established(self) -> Stepped:
        """Report the TLS handshake done (after a ``StartTLS`` event; a transcript's stepper does it)."""
        self._by_hand()

        def turn() -> bytes:
            self.session.tls_established()
            return self._pump.drain()

        return self._record(turn)

    def pending(self) -> Stepped:
        """Collect what happened without a reply: what work queued on ``session`` wrote (in state
        ready it goes out at once), or what ``session.close()`` settled.  Walking a transcript, those
        bytes are checked against it with the next reply's."""
        cursor = self._cursor
        if cursor is not None:
            return self._record(lambda: cursor.collect(self._pump))
        return self._record(lambda: self._pump.drain())

    def next(self) -> Stepped:
        """Feed the transcript's next server chunk and check what the session wrote against it."""
        __tracebackhide__ = True  # a mismatch is the session's, not this method's
        cursor = self._cursor
        if cursor is None:
            raise TypeError("next() walks a transcript: make the stepper with transcript=...")
        if cursor.done:
            raise AssertionError(f"the transcript has no more server lines (the session is {self.state!r})")
        if not cursor.started:
            self._record(lambda: cursor.start(self._pump))
        return self._record(lambda: cursor.feed_next(self._pump))

    def run(self) -> list[Stepped]:
        """Walk the rest of the transcript (``next()`` until it is done); every step's ``Stepped``."""
        __tracebackhide__ = True
        steps = []
        while self._cursor is not None and not self._cursor.done:  # bounded by the transcript's chunks
            steps.append(self.next())
        return steps

    def expect(self, *, state: str | None = None, wrote: bytes | None = None, rows: Iterable[str] | None = None,
               events: Iterable[type[Event | SMTPError]] | None = None,
               error: type[SMTPError] | None = None) -> Stepped:
        """Assert what the last step did; returns it.

        ``state``: the state after it; ``wrote``: the exact bytes written; ``rows``: the labels (or
        triggers) of the table rows it took, in order; ``events``: the classes of its events, in
        order (the error that ended the session included); ``error``: the class of the error it
        raised.  A failure is one ``AssertionError`` listing every difference, what the step did,
        and, with a transcript, the lines around it.
        """
        __tracebackhide__ = True  # the failure points at the test's line
        last = self.last
        problems = []
        if state is not None and last.state != state:
            problems.append(f"state: expected {state!r}, got {last.state!r}")
        if wrote is not None and last.sent != wrote:
            problems.append(f"wrote: expected {wrote!r}, got {last.sent!r}")
        if rows is not None and self.session.trace is None:
            problems.append("rows: the session keeps no trace, so no row is known (make it with trace=True)")
        elif rows is not None:
            wanted, taken = list(rows), [row.label for row in self._last_rows]
            triggers = [row.trigger for row in self._last_rows]
            if wanted not in (taken, triggers):
                problems.append(f"rows: expected {wanted!r}, took {taken!r} (triggers {triggers!r})")
        if events is not None:
            wanted_events, got = [kind.__name__ for kind in events], [type(e).__name__ for e in last.events]
            if wanted_events != got:
                problems.append(f"events: expected {wanted_events!r}, got {got!r}")
        if error is not None and not (len(last.errors) == 1 and isinstance(last.errors[0], error)):
            problems.append(f"error: expected one {error.__name__}, got {last.errors!r}")
        if problems:
            raise AssertionError("\n".join(["the last step did not go as expected:", *("  " + p for p in problems),
                                              *self._describe_last()]))
        return last

    def _describe_last(self) -> list[str]:
        last = self.last
        lines = [f"  the step: wrote {last.sent!r}, state {last.state!r}, events "
                 f"{[type(e).__name__ for e in last.events]!r}"]
        cursor = self._cursor
        if cursor is not None and self.transcript is not None and cursor.lineno:
            lines += [f"  transcript (step {cursor.step}):", self.transcript.excerpt(cursor.lineno)]
        return lines

    def _by_hand(self) -> None:
        if self._cursor is not None:
            raise TypeError("this stepper walks a transcript: use next() (feeding by hand would leave it)")

    def _record(self, turn: Callable[[], bytes]) -> Stepped:
        first, traced = len(self._pump.events), len(self.session.trace or ())
        out = turn()
        self._sent.append(out)
        steps = (self.session.trace or [])[traced:]
        self._last_rows = tuple(table.TRANSITIONS[index] for step in steps for index in (step.rows or ())
                                if 0 <= index < len(table.TRANSITIONS))
        self._last = Stepped(out, self.session.state, tuple(self._pump.events[first:]))
        return self._last


def _line_bytes(line: str | bytes) -> bytes:
    data = line.encode("utf-8") if isinstance(line, str) else line
    return data if data.endswith(b"\r\n") else data + b"\r\n"



__all__ = ["SessionStepper", "Stepped"]
