"""The one loop between the engine and a transport, written once for every driver.

``pump(session, until)`` is a generator that asks its runner for I/O and does
everything else: it hands out what the engine wants written (``Write``), asks
for bytes when the engine needs them (``READ``; the runner sends them in, or
``b""`` for the end, or None to look again without reading: work was queued
meanwhile), asks for the TLS handshake the engine requested (``Handshake``;
when the runner resumes it, the handshake is done), and returns the first
event ``until`` accepts.  An error that
ends the session is raised from it, as ``next_event`` raises it.  The blocking
driver, the asyncio driver and replay run it; what differs between them --
sockets, deadlines, event loops -- is how they answer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import NamedTuple

from .events import NEED_DATA, Event, StartTLS
from .protocol.table import TLS_HANDSHAKE
from .session import ClientSession


class Write(NamedTuple):
    """Write these bytes to the server."""

    data: bytes


class Read(NamedTuple):
    """Send in what the server sent next (``b""`` when it closed)."""


class Handshake(NamedTuple):
    """Run the TLS handshake on the transport, then resume the loop (it reports it to the engine)."""

    event: StartTLS


READ = Read()
Step = Write | Read | Handshake
Pump = Generator[Step, bytes | None, Event]


def pump(session: ClientSession, until: Callable[[Event], bool]) -> Pump:
    """Move the session on until an event ``until`` accepts, asking the runner for each piece of I/O."""
    while True:
        out = session.data_to_send()
        if out:
            yield Write(out)
        event = session.next_event()
        if event is NEED_DATA:
            data = yield READ
            if data is not None:
                session.receive_data(data)
        elif isinstance(event, StartTLS):
            yield Handshake(event)
            if session.state == TLS_HANDSHAKE:  # unless the runner reported it to the engine itself
                session.tls_established()
        elif until(event):
            return event


__all__ = ["READ", "Handshake", "Pump", "Read", "Step", "Write", "pump"]
