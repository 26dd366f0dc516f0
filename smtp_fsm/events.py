"""Immutable events that :meth:`ClientSession.next_event` hands to the caller."""

from __future__ import annotations

from dataclasses import dataclass

from .extensions import Capabilities
from .replies import Reply
from .results import SendResult


class Event:
    """Base class of every event."""

    __slots__ = ()


class _NeedData(Event):
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_event`` when the engine waits for more bytes from the server.
NEED_DATA = _NeedData()


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
    """The session ended cleanly after QUIT (``reply`` is None when the server closed without 221)."""

    reply: Reply | None
