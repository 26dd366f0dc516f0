"""The sans-IO engine with TLS through ``ssl.MemoryBIO``: the socket is never wrapped.

``SSLContext.wrap_bio`` gives an ``SSLObject`` that reads ciphertext from one memory
buffer and writes ciphertext to another; this file moves those bytes over a plain
blocking socket.  Until the engine's ``StartTLS`` event the socket carries the
engine's bytes as they are; on it, the handshake is driven by hand; after
``tls_established()`` every write is encrypted and every read decrypted through the
``SSLObject``.  The same shape fits any transport that moves bytes but knows no TLS.

Each socket read waits at most ``timeout`` seconds: one that waits longer ends the
session with ``SMTPTimeout`` (the handshake's too).

Run it on its own (``python examples/memory_bio.py``): it starts a local STARTTLS server
with a throwaway CA and sends it a message.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Callable, Iterable
from email.message import Message
from typing import TypeVar

import smtp_fsm

T = TypeVar("T")
#: Socket reads allowed for one TLS step (the handshake, one record): a bound no sane peer reaches.
MAX_READS = 1_000
#: Turns of the session loop: one message takes a few dozen; the engine ends every session long before.
MAX_TURNS = 10_000


def send(host: str, port: int, sender: str, recipients: str | Iterable[str], message: bytes | str | Message,
         context: ssl.SSLContext, *, server_hostname: str | None = None, timeout: float = 60.0) -> smtp_fsm.SendResult:
    """Send one message with STARTTLS required; returns its SendResult, whatever happened after the connect."""
    sock = socket.create_connection((host, port), timeout=timeout)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls: ssl.SSLObject | None = None  # set once the handshake is done: from then on every byte goes through it
    session = smtp_fsm.ClientSession(local_hostname=smtp_fsm.ehlo_name(sock), starttls="required")
    ticket = session.sendmail(sender, recipients, message)
    session.quit()
    result: smtp_fsm.SendResult | None = None

    def pump(step: Callable[[], T]) -> T:
        """Run one SSLObject step (``do_handshake``, ``read``), moving ciphertext over the socket until it is done."""
        for _ in range(MAX_READS):
            try:
                return step()
            except ssl.SSLWantReadError:
                if out := outgoing.read():
                    sock.sendall(out)
                data = sock.recv(65536)
                incoming.write(data) if data else incoming.write_eof()  # EOF: the step raises SSLEOFError
        raise ssl.SSLError(f"no complete TLS record in {MAX_READS} reads")

    try:
        for _turn in range(MAX_TURNS):
            try:
                if out := session.data_to_send():
                    if tls is not None:
                        tls.write(out)
                        out = outgoing.read()
                    sock.sendall(out)
                event = session.next_event()
                if event is smtp_fsm.NEED_DATA:
                    session.receive_data(pump(functools.partial(tls.read, 65536)) if tls else sock.recv(65536))
                elif isinstance(event, smtp_fsm.StartTLS):
                    handshake = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname or host)
                    try:
                        pump(handshake.do_handshake)
                    finally:  # our last flight: the Finished, or the alert that tells the server why we stop
                        with contextlib.suppress(OSError):
                            sock.sendall(outgoing.read())
                    tls = handshake
                    session.tls_established()
                elif isinstance(event, smtp_fsm.MessageSent) and event.ticket == ticket:
                    result = event.result
                elif isinstance(event, smtp_fsm.Closed):
                    assert result is not None  # every queued message has its MessageSent before Closed
                    return result
            except smtp_fsm.SMTPError:  # raised once; the results and Closed follow
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as exc:  # close_notify, or a close without one
                if tls is None:  # during the handshake: the handshake failed
                    session.close(exc)
                else:  # the server closed the connection, as a plain socket's b"" says
                    session.receive_data(b"")
            except OSError as exc:  # a timeout, a reset, a failed handshake (an ssl.SSLError is an OSError)
                session.close(exc)
        raise RuntimeError(f"the session did not end in {MAX_TURNS} turns")
    finally:
        sock.close()


if __name__ == "__main__":
    from smtp_fsm.testing.servers import LocalSMTPServer, make_test_tls

    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        outcome = send(server.host, server.port, "alice@example.org", ["bob@example.org"],
                       b"Subject: memory BIO\r\n\r\nencrypted through ssl.MemoryBIO\r\n", tls.client_context,
                       timeout=10)
        for received in server.messages:
            print(f"received {received.message['Subject']!r} from {received.mail_from} "
                  f"to {', '.join(received.rcpt_tos)}; STARTTLS: {received.peer_tls}")
    print(f"outcome: {outcome.outcome}")
