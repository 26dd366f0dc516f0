"""Replay a transcript against the engine: every byte the client writes, compared.

``replay`` feeds a transcript's ``S:`` lines to a :class:`ClientSession` one
reply at a time and checks that the engine writes exactly the ``C:`` lines
(``<credentials>`` in the transcript stands for any credential), the EHLO
name included unless ``ignore`` names it.  A mismatch raises
:class:`ReplayMismatch`, an ``AssertionError`` naming the step, the transcript
line, the state, the expected and written bytes, and the lines around it.

``SessionStepper`` (stepping.py) walks the same transcripts one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import SMTPError
from ..events import Event
from ..session import ClientSession
from ..trace import TraceStep
from ..transcript import Match, Transcript, match_lines, parse_transcript
from .checking import EHLO_NAME, Ignore, ReplayMismatch, TranscriptCursor, hide_credentials
from .stepping import SessionStepper, Stepped, _Pump

#: What the session gets before the first reply when ``replay`` is given no work.
Work = Callable[[ClientSession], object]
SessionFactory = Callable[[], ClientSession]
#: The EHLO name of replay's own session: what the drivers say on a loopback connection, so a
#: session recorded against a local server replays as it is.
DEFAULT_EHLO_NAME = "[127.0.0.1]"


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


def _default_session(transcript: Transcript, options: dict[str, object]) -> ClientSession:
    """replay's own session: LMTP when the transcript says LHLO; the EHLO name is ``DEFAULT_EHLO_NAME``
    unless given (never the transcript's own: then a wrong name could not fail)."""
    options.setdefault("local_hostname", DEFAULT_EHLO_NAME)
    options.setdefault("trace", True)
    if "lmtp" not in options:
        first = next((line for exchange in transcript for line in exchange.client), None)
        options["lmtp"] = first is not None and first.data[:5].upper() == b"LHLO "
    return ClientSession(**options)  # type: ignore[arg-type]


def replay(
    transcript: Transcript | str,
    session_factory: SessionFactory | ClientSession | None = None,
    work: Work | None = None,
    *,
    auto_tls: bool = True,
    ignore: Iterable[str] = (),
    **session_options: object,
) -> ReplayResult:
    """Feed the transcript's server lines to a session and assert it writes exactly the client lines.

    ``session_factory`` is a ``ClientSession`` or a callable making one; by
    default a session made with ``session_options`` (``local_hostname``
    defaults to ``DEFAULT_EHLO_NAME``, "[127.0.0.1]"; LMTP when the transcript
    says LHLO).  ``work`` is called with the session before the first reply to
    queue what it should do (``lambda s: s.sendmail(...)``); by default it
    queues only ``quit()``.  Everything is compared, the EHLO name included;
    ``ignore`` names what to leave out: ``"ehlo"`` (the EHLO/HELO/LHLO
    argument) and header fields (``"Date"``, ``"Message-ID"``).  When the
    engine asks for a TLS handshake, replay reports it done (``auto_tls``).
    Errors that end the session are returned in the result, not raised: a
    transcript may well end in a 421.
    """
    __tracebackhide__ = True  # a mismatch is the client's: the test's line is where it shows
    script = parse_transcript(transcript) if isinstance(transcript, str) else transcript
    if session_factory is not None and session_options:
        raise TypeError("give either a session (or a factory) or options for a new one, not both")
    if isinstance(session_factory, ClientSession):
        session = session_factory
    elif session_factory is not None:
        session = session_factory()
    else:
        session = _default_session(script, dict(session_options))
    (work or (lambda s: s.quit()))(session)
    pump = _Pump(session, auto_tls)
    cursor = TranscriptCursor(script, Ignore(ignore))
    cursor.start(pump)
    while not cursor.done:  # bounded: one chunk of the transcript each turn
        cursor.feed_next(pump)
    # A session with a trace gives every state it passed through; without one, those seen after each feed.
    steps = list(session.trace or [])
    states = _states(steps, session.state) if session.trace is not None else pump.states
    return ReplayResult(pump.events, states, steps, b"".join(cursor.written) + cursor.pending, pump.error, session)


__all__ = [
    "DEFAULT_EHLO_NAME",
    "EHLO_NAME",
    "Match",
    "ReplayMismatch",
    "ReplayResult",
    "SessionStepper",
    "Stepped",
    "hide_credentials",
    "match_lines",
    "replay",
]
