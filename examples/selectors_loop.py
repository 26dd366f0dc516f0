"""Several messages on one connection, the engine driven from a ``selectors`` loop on a non-blocking socket.

``send_all(host, port, messages)`` queues every message at once (``send_many``, pipelined when the
server offers PIPELINING), then QUIT, and returns one ``SendResult`` per message, in order.

Deadlines are the loop's, since the engine has no clock.  Each reply gets its own: ``timeout``
(RFC 5321 §4.5.3.2: 5 minutes), or ``data_timeout`` for the reply to the end of the data
(``session.awaiting == END_OF_DATA``, §4.5.3.2.6: 10 minutes) once all of the data is written;
while it is being written, ``timeout`` bounds each write (§4.5.3.2.5's data block, 3 minutes).
The clock restarts whenever the session makes progress: a reply completes
(``session.replies_received`` moves), the awaited reply changes (``session.awaiting``), or bytes
are written -- so a reply's clock starts once its command is out (the engine cannot know when
the caller's writes finish), and a server that stops reading also times out.  When a deadline passes,
``session.close(TimeoutError(...))`` ends the session: ``next_event`` raises ``SMTPTimeout`` once,
every unfinished message gets its ``MessageSent`` (``not_sent``, or ``uncertain`` once its content
went out) and ``Closed`` follows.

STARTTLS: handled, when the server offers it (the engine's default ``starttls="opportunistic"``).
On the ``StartTLS`` event the handshake is done *blocking* (bounded by ``timeout``), since this
loop serves one connection and has nothing else to do meanwhile; then the socket goes back to
non-blocking.  A TLS socket in a selector needs two things a plain one does not: ``recv`` and
``send`` may raise ``SSLWantReadError``/``SSLWantWriteError`` (they are ``OSError``s, so they
must be caught before the ``OSError`` that means a reset), and decrypted bytes already read off
the wire (``sock.pending()``) do not make the socket readable, so they are read at once.

Run ``python examples/selectors_loop.py`` to send three messages to a local aiosmtpd server.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from collections.abc import Iterable, Sequence

import smtp_fsm
from smtp_fsm.session import END_OF_DATA

#: One message: (sender, recipients, content).
Item = tuple[str, Sequence[str], bytes]


def send_all(host: str, port: int, messages: Iterable[Item], *, timeout: float = 300.0, data_timeout: float = 600.0,
             context: ssl.SSLContext | None = None) -> list[smtp_fsm.SendResult]:
    """Send ``messages`` over one connection (STARTTLS when offered); their results, in order."""
    sock = socket.create_connection((host, port), timeout=timeout)
    session = smtp_fsm.ClientSession(local_hostname=smtp_fsm.ehlo_name(sock))
    tickets = session.send_many(messages)
    session.quit()
    results: dict[int, smtp_fsm.SendResult] = {}
    out, deadline = b"", 0.0  # the bytes owed to the server; when the awaited reply is late
    progress: tuple[int, str | None, int] = (-1, None, 0)  # what the deadline was last set for
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    try:
        while True:
            out += session.data_to_send()  # every turn: after a refusal it holds the courtesy QUIT
            try:
                event = session.next_event()
            except smtp_fsm.SMTPError:  # raised once (SMTPTimeout after close(TimeoutError)); results, Closed follow
                continue
            if isinstance(event, smtp_fsm.MessageSent):
                results[event.ticket] = event.result
            elif isinstance(event, smtp_fsm.Closed):
                return [results[ticket] for ticket in tickets]  # every queued message had its MessageSent
            elif isinstance(event, smtp_fsm.StartTLS):  # the handshake, blocking: nothing else to do meanwhile
                selector.unregister(sock)
                sock.settimeout(timeout)
                try:
                    sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=host)
                except OSError as exc:  # a bad certificate, a timeout, a reset: the session ends with TLSError
                    session.close(exc)  # (the loop never waits on the socket again)
                    continue
                session.tls_established()
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            elif event is smtp_fsm.NEED_DATA:
                now = time.monotonic()
                if (mark := (session.replies_received, session.awaiting, len(out))) != progress:  # progress made
                    after_data = session.awaiting == END_OF_DATA and not out  # all of the data, "." too, is out
                    progress, deadline = mark, now + (data_timeout if after_data else timeout)
                elif now >= deadline:
                    session.close(TimeoutError(f"no reply to {session.awaiting or 'the last command'} in time"))
                    continue
                selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
                for _, mask in selector.select(max(0.0, deadline - now)):
                    out = _pump(session, sock, out, mask)
    finally:
        selector.close()
        sock.close()


def _pump(session: smtp_fsm.ClientSession, sock: socket.socket, out: bytes, mask: int) -> bytes:
    """Write what is owed and feed what came; returns what is still owed."""
    try:
        if mask & selectors.EVENT_WRITE:
            out = out[sock.send(out) :]
        if mask & selectors.EVENT_READ:
            data = sock.recv(65536)
            while data and isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted, invisible to select
                data += sock.recv(sock.pending())
            session.receive_data(data)  # b"": the server closed
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):  # not errors: try again when ready
        pass
    except OSError as exc:  # a reset: the session ends with an SMTPError chained from it
        session.close(exc)
    return out


if __name__ == "__main__":
    from smtp_fsm.testing.servers import LocalSMTPServer

    with LocalSMTPServer(pipelining=True) as server:
        batch = [("a@example.org", [f"user{n}@example.net"], f"Subject: message {n}\r\n\r\nhello {n}\r\n".encode())
                 for n in range(3)]
        sent = send_all(server.host, server.port, batch, timeout=10.0, data_timeout=20.0)
        for result in sent:
            print(f"{', '.join(result.recipients)}: {result.outcome} ({result.reply})")
        print(f"{sum(result.ok for result in sent)}/{len(sent)} delivered, {len(server.messages)} received")
