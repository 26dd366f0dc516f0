"""The blocking driver's socket: connect, read against a deadline, write in pieces, take in a goodbye.

Only bytes and time live here; what they mean is the engine's business and
which error to raise is the driver's.  A read past its deadline raises
``TimeoutError``; a TLS failure raises ``ssl.SSLError``; a reset reads as the
end of the connection (``b""``), which the engine judges.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from typing import Any

from ._driver import Readable
from .protocol.table import FINAL_STATES
from .session import ClientSession

_RECV_SIZE = 65536
_WRITE_PIECE = 1 << 20
#: A write longer than this reads the replies that arrive while it goes (RFC 2920 §3.1: a client
#: blocked writing while the server is blocked writing replies nobody reads is a deadlock).
_READ_WHILE_WRITING = 1 << 14
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Bounds on the reads that take in what a leaving server said: it is small (a 421 and the close).
_GOODBYE_READS = 64
#: How far past its deadline a read may end rather than lower the socket's timeout for it: setting
#: a timeout costs two fcntl calls, and the deadline of a command's reply, counted from the end of
#: the write, is always a little nearer than the whole timeout the socket holds.
_TIMEOUT_SLACK = 0.01


def _open_socket(host: str, port: int, timeout: float, family: socket.AddressFamily,
                 source_address: tuple[str, int] | None) -> socket.socket:
    """A connected socket, from ``source_address`` when given, in ``family`` when limited to one."""
    if family == socket.AF_UNSPEC:
        return socket.create_connection((host, port), timeout, source_address)
    # create_connection takes no family: resolve in the one asked for, then connect to each address in
    # turn as its own loop does (a numeric address is resolved again without a DNS query, to its family).
    error: OSError | None = None
    for *_, sockaddr in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM):
        try:
            return socket.create_connection((str(sockaddr[0]), port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no {family.name} address for {host}")


class SocketLink:
    """A connected socket and the timeout it holds now (``settimeout`` costs two fcntl calls)."""

    @classmethod
    def open(cls, host: str, port: int, timeout: float, family: socket.AddressFamily,
             source_address: tuple[str, int] | None) -> SocketLink:
        """Connect (``OSError`` when that fails)."""
        return cls(_open_socket(host, port, timeout, family, source_address), timeout)

    def peer(self) -> tuple[Any, Any]:
        """``(sockname, peername)``, Nagle off; ``(None, None)`` after a reset right after the accept
        (reading the greeting then reports it)."""
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self.sock.getsockname(), self.sock.getpeername()
        except OSError:
            return None, None

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.read_timeout = timeout  # what the socket's timeout is set to now
        self.readable = Readable(sock.fileno())  # the descriptor outlives a TLS upgrade

    def full_timeout(self) -> None:
        """Give the socket the whole timeout again (a read may have lowered it)."""
        if self.read_timeout != self.timeout:
            self.read_timeout = self.timeout
            self.sock.settimeout(self.timeout)

    def read(self, deadline: float) -> bytes:
        """What arrives before ``deadline`` (``time.monotonic()``); ``b""`` at the end or a reset."""
        sock = self.sock
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if remaining < self.read_timeout - _TIMEOUT_SLACK:
                # Lowered only when a reply spans several reads (or its deadline is shorter).
                self.read_timeout = remaining
                sock.settimeout(remaining)
            try:
                if _QUICKACK is not None:
                    # Peers that never set TCP_NODELAY stall ~40 ms on delayed ACKs otherwise.
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                return sock.recv(_RECV_SIZE)
            except TimeoutError:
                # The socket's timeout may be shorter than this deadline (left from a handshake
                # or an earlier reply): the loop decides whether the deadline itself has passed.
                self.read_timeout = float("inf")
            except ssl.SSLError:
                raise
            except OSError:
                return b""  # a reset counts as the server closing; the engine decides if that is an error

    def write(self, data: bytes, session: ClientSession) -> None:
        """Write ``data``; a write that fails because the server left lets the engine read why.

        Raises ``TimeoutError`` when the server takes nothing for a whole timeout.
        """
        self.full_timeout()
        try:
            if len(data) <= _READ_WHILE_WRITING:
                self.sock.sendall(data)
            else:
                self._write_reading(data, session)
        except TimeoutError:
            raise
        except OSError:
            self.take_goodbye(session)

    def _write_reading(self, data: bytes, session: ClientSession) -> None:
        """Write ``data`` and feed the engine the replies that arrive meanwhile, so that a server that
        stops reading until its replies are read cannot stall both ends.  A whole timeout without
        progress either way raises ``TimeoutError``: a large message on a slow but steady link is
        bounded by progress, not by its size."""
        sock, view, sent = self.sock, memoryview(data), 0
        sock.settimeout(0.0)
        self.read_timeout = 0.0
        try:
            while sent < len(view) and session.state not in FINAL_STATES:
                tls_pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                readable, writable, _ = select.select([sock], [sock], [], 0.0 if tls_pending else self.timeout)
                if not (readable or writable or tls_pending):
                    raise TimeoutError
                if readable or tls_pending:
                    with contextlib.suppress(*_WOULD_BLOCK):
                        session.receive_data(sock.recv(_RECV_SIZE))  # (b"": the server left; the loop ends)
                if writable:
                    with contextlib.suppress(*_WOULD_BLOCK):
                        sent += sock.send(view[sent : sent + _WRITE_PIECE])
        finally:
            self.full_timeout()

    def take_goodbye(self, session: ClientSession) -> None:
        """The write failed: the server may have said why (421) before it closed. The engine
        reads what arrived, then the close, and reports it as for any other close."""
        try:
            self.sock.settimeout(1.0)
            for _ in range(_GOODBYE_READS):
                data = self.sock.recv(_RECV_SIZE)
                if not data or session.state in FINAL_STATES:
                    break
                session.receive_data(data)
        except OSError:
            pass
        if session.state not in FINAL_STATES:
            session.receive_data(b"")

    def absorb(self, session: ClientSession) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close), without waiting."""
        sock = self.sock
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending and not self.readable():
            return  # the common case: nothing arrived, one system call
        sock.settimeout(0.0)
        self.read_timeout = 0.0
        try:
            for _ in range(_GOODBYE_READS):
                try:
                    data = sock.recv(_RECV_SIZE)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except OSError:
                    data = b""  # a reset: the server is gone
                session.receive_data(data)
                if not data or session.state in FINAL_STATES:
                    break
        finally:
            self.full_timeout()

    def flush(self, data: bytes) -> None:
        """Best effort, for a courtesy QUIT queued before an error: a second at most, errors ignored."""
        if data:
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()

    def interrupt(self) -> None:
        """From another thread: a read or write blocked on the socket returns (the end, or an error)."""
        with contextlib.suppress(OSError):  # (closed already)
            self.sock.shutdown(socket.SHUT_RDWR)

    def handshake(self, context: ssl.SSLContext, server_hostname: str, deadline: float) -> None:
        """Wrap the socket in TLS; raises ``OSError`` (a timeout, a refused certificate, a cut)."""
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.read_timeout = float("inf")  # unknown now: the next read or write sets it again
