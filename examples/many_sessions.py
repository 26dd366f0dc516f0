"""Hundreds of SMTP sessions from one process and one ``selectors`` loop, one message each.

``send_each(host, port, messages, local_hostname=...)`` opens one non-blocking socket and one
``ClientSession`` per message, drives them all from one ``selectors.DefaultSelector`` (epoll on
Linux: no ``select()`` limit of 1024 descriptors), and returns one ``SendResult`` per message,
in order.  Everything is bounded by one global ``deadline``: when it passes, every session still
open is ended with ``close(TimeoutError(...))`` (``SMTPTimeout``; its message ``not_sent``, or
``uncertain`` once its content went out).

What the engine leaves to this loop:

- ``local_hostname`` is given, not read from each socket: the sessions exist before their
  connects complete (``getsockname()`` may still say 0.0.0.0 then), so that a connect that
  fails still ends its session the usual way, with a ``MessageSent`` and ``Closed``.  A bulk
  sender has a configured name anyway (RFC 5321 §4.1.1.1); the demo sends ``[127.0.0.1]``.
- The connect needs no state of its own: a socket is registered for reading from the start,
  the session says nothing before the greeting, and a failed connect shows up as a readable
  socket whose ``recv`` raises (then ``close(exc)``).
- ``starttls="never"``: a TLS handshake done blocking would stall every other session in the
  loop, and a non-blocking one (``ssl.MemoryBIO``, or ``do_handshake()`` retried on the
  selector) is more glue than this example is about.  So the sessions stay in clear even when
  the server offers STARTTLS, which suits a loopback or trusted link only; without this setting
  an unhandled ``StartTLS`` event would leave a session waiting until the global deadline.
- Every connect starts at once.  The server's listen backlog (asyncio's default, so aiosmtpd's,
  is 100) bounds how many it has not accepted yet; past it, with SYN cookies (Linux's default),
  a connection can look established to the client and never be served, and since the server
  speaks first the session just waits for its greeting -- here until the global deadline (on
  the machine this was written on: none lost at 200 or 500 sessions, some at 600 and more).
  Sending thousands, cap the sessions open at once, and give each reply its own deadline as
  selectors_loop.py does.

Run ``python examples/many_sessions.py`` to send 200 messages to a local aiosmtpd server.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import smtp_fsm

#: One message: (sender, recipients, content).
Item = tuple[str, Sequence[str], bytes]


@dataclass(eq=False)
class Peer:
    """One session and its socket, with the bytes owed to its server."""

    sock: socket.socket
    session: smtp_fsm.ClientSession
    out: bytes = b""
    result: smtp_fsm.SendResult | None = None


def send_each(host: str, port: int, messages: Iterable[Item], *, local_hostname: str,
              deadline: float = 60.0) -> list[smtp_fsm.SendResult]:
    """One session per message to ``host`` (an IPv4 address), all at once; their results, in order."""
    end = time.monotonic() + deadline
    selector = selectors.DefaultSelector()
    peers: list[Peer] = []
    try:
        for sender, recipients, content in messages:
            session = smtp_fsm.ClientSession(local_hostname=local_hostname, starttls="never")  # (see above)
            session.sendmail(sender, recipients, content)
            session.quit()
            peers.append(peer := Peer(socket.socket(socket.AF_INET, socket.SOCK_STREAM), session))
            peer.sock.setblocking(False)
            selector.register(peer.sock, selectors.EVENT_READ, peer)
            error = peer.sock.connect_ex((host, port))  # completes in the background
            if error not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                session.close(OSError(error, os.strerror(error)))
            advance(peer, selector)
        while selector.get_map() and (left := end - time.monotonic()) > 0:
            for key, mask in selector.select(left):
                pump(key.data, mask)
                advance(key.data, selector)
        for key in list(selector.get_map().values()):  # the global deadline passed
            key.data.session.close(TimeoutError(f"the global deadline of {deadline} s passed"))
            advance(key.data, selector)
        done = [peer.result for peer in peers if peer.result is not None]
        assert len(done) == len(peers), "every session ends with the MessageSent of its message"
        return done
    finally:
        for peer in peers:
            peer.sock.close()
        selector.close()


def pump(peer: Peer, mask: int) -> None:
    """Write what the session owes its server, feed it what came."""
    try:
        if mask & selectors.EVENT_WRITE:
            peer.out = peer.out[peer.sock.send(peer.out) :]
        if mask & selectors.EVENT_READ:
            peer.session.receive_data(peer.sock.recv(65536))  # b"": the server closed
    except BlockingIOError:
        pass
    except OSError as exc:  # refused, reset: the session ends with an SMTPError chained from it
        peer.session.close(exc)


def advance(peer: Peer, selector: selectors.BaseSelector) -> None:
    """Run the session until it needs the network; at ``Closed``, let its socket go."""
    while True:
        peer.out += peer.session.data_to_send()  # every turn: after a refusal it holds the courtesy QUIT
        try:
            event = peer.session.next_event()
        except smtp_fsm.SMTPError:  # raised once; the MessageSent and Closed follow
            continue
        if event is smtp_fsm.NEED_DATA:
            selector.modify(peer.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.out else 0), peer)
            return
        if isinstance(event, smtp_fsm.MessageSent):
            peer.result = event.result
        elif isinstance(event, smtp_fsm.Closed):
            selector.unregister(peer.sock)
            peer.sock.close()
            return


if __name__ == "__main__":
    from smtp_fsm.testing.servers import LocalSMTPServer

    count = 200
    with LocalSMTPServer(pipelining=True) as server:
        started = time.monotonic()
        results = send_each(server.host, server.port,
                            [("a@example.org", [f"user{n}@example.net"], f"Subject: session {n}\r\n\r\nhi\r\n".encode())
                             for n in range(count)],
                            local_hostname=smtp_fsm.ehlo_name("127.0.0.1"), deadline=60.0)
        elapsed = time.monotonic() - started
        print(f"{count} sessions: {sum(result.ok for result in results)} delivered, "
              f"{len(server.messages)} received by the server, in {elapsed:.2f} s")
