"""The one loop between the engine and a transport, written once for every driver.

A ``Pump`` runs a session until an event its ``until`` accepts, asking its
runner for each piece of I/O: ``advance(data)`` returns the next request, or
the accepted event when done (it raises the error that ended the session, as
``next_event`` does -- after the bytes handed out before it were asked to be
written).  The requests:

* ``Exchange(data)``: write ``data`` (it may be empty), then read, and call
  ``advance`` with what the server sent (``b""`` when it closed; None to look
  again without reading, when work was queued meanwhile);
* ``Write(data)``: write ``data``, then call ``advance(None)``;
* ``Handshake(event)``: run the TLS handshake the engine asked for, then call
  ``advance(None)``, which reports it to the engine.

The blocking driver, the asyncio driver and replay run it; what differs between
them -- sockets, deadlines, event loops -- is how they answer.  It is a plain
object rather than a generator: a step costs one method call, no exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .errors import SMTPError
from .events import NEED_DATA, Event, StartTLS
from .protocol.table import TLS_HANDSHAKE
from .session import ClientSession


class Exchange(NamedTuple):
    """Write ``data`` (if any), then read: pass ``advance`` what the server sent."""

    data: bytes


class Write(NamedTuple):
    """Write ``data``; nothing is read."""

    data: bytes


class Handshake(NamedTuple):
    """Run the TLS handshake on the transport, then call ``advance(None)`` (it reports it to the engine)."""

    event: StartTLS


Step = Exchange | Write | Handshake


class Pump:
    """One run of a session until an event ``until`` accepts (see the module's docstring)."""

    __slots__ = ("_handshake", "_queued", "session", "until")

    def __init__(self, session: ClientSession, until: Callable[[Event], bool]) -> None:
        self.session = session
        self.until = until
        # What the next call gives, once the Write before it is done: an error to raise, a
        # handshake to ask for, or the accepted event.
        self._queued: SMTPError | Handshake | Event | None = None
        self._handshake = False  # a handshake was asked for: the next call reports it done

    def advance(self, data: bytes | None) -> Step | Event:
        """The next request, or the accepted event; ``data`` answers the last ``Exchange``."""
        session = self.session
        if data is not None:
            session.receive_data(data)
        queued = self._queued
        if queued is not None:
            self._queued = None
            if isinstance(queued, SMTPError):
                raise queued
            self._handshake = isinstance(queued, Handshake)
            return queued
        if self._handshake:
            self._handshake = False
            if session.state == TLS_HANDSHAKE:  # unless the runner reported it to the engine itself
                session.tls_established()
        until = self.until
        while True:
            out = session.data_to_send()
            try:
                event = session.next_event()
            except SMTPError as exc:
                if not out:
                    raise
                self._queued = exc  # handed out already: it is written before the error is raised
                return Write(out)
            if event is NEED_DATA:
                return Exchange(out)
            if isinstance(event, StartTLS):
                handshake = Handshake(event)
                if out:
                    self._queued = handshake
                    return Write(out)
                self._handshake = True
                return handshake
            if until(event):
                if out:
                    self._queued = event
                    return Write(out)
                return event
            if out:  # an event this run does not wait for: what was handed out is written, and it goes on
                return Write(out)


__all__ = ["Exchange", "Handshake", "Pump", "Step", "Write"]
