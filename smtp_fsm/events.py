"""Immutable events that :meth:`ClientSession.next_event` hands to the caller.

``next_event`` returns a ``SessionEvent`` (the union of the event classes, so a
``match`` over it can be checked for exhaustiveness) or ``NEED_DATA``, which is
not an event: it is the sentinel that says "feed me", in the way of h11.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import SMTPError
from .extensions import Capabilities
from .replies import Reply
from .results import SendResult


class Event:
    """Base class of every event."""

    __slots__ = ()


class NeedData(enum.Enum):
    """The type of ``NEED_DATA``: one member, so that ``event is NEED_DATA`` narrows for mypy."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"

    __str__ = __repr__


#: Returned by ``next_event`` when the engine waits for more bytes from the server.
NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class SessionReady(Event):
    """The session is open (greeting, EHLO/HELO, STARTTLS, AUTH done) and takes mail."""

    capabilities: Capabilities
    reply: Reply
    encrypted: bool
    authenticated_as: str | None


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """The server said 220 to STARTTLS: run the TLS handshake, then call ``tls_established()``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """AUTH succeeded (235) with ``mechanism``."""

    mechanism: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class MessageSent(Event):
    """One queued message is finished (``result.ok`` tells whether it went)."""

    ticket: int
    result: SendResult


@dataclass(frozen=True, slots=True)
class CommandDone(Event):
    """A NOOP or RSET asked for by the caller was answered."""

    ticket: int
    verb: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """The session is over: the last event, and every ``next_event`` after it returns this same one.

    ``reply`` is the server's answer to QUIT (None when it closed without one, or when the
    session ended without QUIT).  ``error`` is what ended the session, None for a clean end;
    when it is set, ``next_event`` raised it once just before this event.
    """

    reply: Reply | None
    error: SMTPError | None = None


#: What ``next_event`` returns besides ``NEED_DATA``: a ``match`` over it can be exhaustive.
SessionEvent = SessionReady | StartTLS | Authenticated | MessageSent | CommandDone | Closed
