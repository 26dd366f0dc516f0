"""The blocking driver: a socket, the engine, and a deadline per reply."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import cast

from ._driver import Operation, Operations, PumpUntil, Readable, T, blocking, ready_event, wait_ready
from .errors import LocalProtocolError, SMTPError, TLSError
from .events import Event
from .pump import Exchange, Handshake, Pump, Write
from .session import replies_read

_RECV_SIZE = 65536
_WRITE_PIECE = 1 << 20
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class SMTPClient(Operations):
    """Blocking SMTP/LMTP client.  ``with SMTPClient(host) as smtp: smtp.send_message(msg)``."""

    _sock: socket.socket | None = None
    _read_timeout = 0.0  # what the socket's timeout is set to now
    _readable: Readable

    # The API, written once in _driver.Operations; this driver answers its I/O requests (_run).
    sendmail, send_message, send_many = (blocking(Operations._sendmail), blocking(Operations._send_message),
                                         blocking(Operations._send_many))
    noop, rset, quit = blocking(Operations._noop), blocking(Operations._rset), blocking(Operations._quit)

    def connect(self) -> SMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        if self._sock is not None:
            raise LocalProtocolError("already connected")
        deadline = time.monotonic() + self.timeout
        try:
            self._sock = sock = self._open_socket()
        except OSError as exc:
            raise self._connect_failed(exc) from exc
        self._readable = Readable(sock.fileno())
        self._read_timeout = self.timeout
        try:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._peer_facts(sock.getsockname(), sock.getpeername())
            except OSError:
                pass  # reset right after the accept: reading the greeting reports it
            if self.tls:
                self._handshake(deadline)
            self.ready = ready_event(self._pump(wait_ready))
        except BaseException:
            self.close()
            raise
        return self

    def _open_socket(self) -> socket.socket:
        """A connected socket, from ``source_address`` when given, in ``family`` when limited to one."""
        if self.family == socket.AF_UNSPEC:
            return socket.create_connection((self.host, self.port), self.timeout, self.source_address)
        # create_connection takes no family: resolve in the one asked for, then connect to each address in
        # turn as its own loop does (a numeric address is resolved again without a DNS query, to its family).
        error: OSError | None = None
        for *_, sockaddr in socket.getaddrinfo(self.host, self.port, self.family, socket.SOCK_STREAM):
            try:
                return socket.create_connection((str(sockaddr[0]), self.port), self.timeout, self.source_address)
            except OSError as exc:
                error = exc
        raise error or OSError(f"no {self.family.name} address for {self.host}")

    def __enter__(self) -> SMTPClient:
        return self.connect()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._sock is not None and not self._closed() and not self._buffered():
                self.quit()
        except SMTPError:
            pass
        finally:
            self.close()

    def _is_connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Close the socket without QUIT (the engine is released too)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        self.session.close()

    # -- answering the operations' requests ----------------------------------------------

    def _run(self, op: Operation[T]) -> T:
        request = next(op)
        while True:
            try:
                try:
                    result: Event | None = None
                    if type(request) is PumpUntil:
                        result = self._pump(request.until)
                    else:
                        self._absorb()
                except BaseException as exc:  # thrown into the operation, which may attach what it knows
                    request = op.throw(exc)
                else:
                    request = op.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _absorb(self) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close), without waiting."""
        sock = self._sock
        assert sock is not None
        if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or self._readable():
            sock.settimeout(0.0)
            self._read_timeout = 0.0
            try:
                for _ in range(64):  # bounded: what a server says before leaving is small
                    try:
                        data = sock.recv(_RECV_SIZE)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    except OSError:
                        data = b""  # a reset: the server is gone
                    self.session.receive_data(data)
                    if not data or self._closed():
                        break
            finally:
                self._full_timeout()
        if self.session.error is not None:
            self._flush_and_close()

    def _pump(self, until: Callable[[Event], bool]) -> Event:
        if self._sock is None:
            raise LocalProtocolError("not connected")
        session = self.session
        steps = Pump(session, until)
        seen, progress, data = replies_read(session), time.monotonic(), None
        while True:
            try:
                step = steps.advance(data)
            except SMTPError:
                self._flush_and_close()
                raise
            if data is not None and replies_read(session) != seen:
                # A complete reply came in what was read: the next one gets a whole timeout.
                seen, progress = replies_read(session), time.monotonic()
                self._full_timeout()
            data = None
            kind = type(step)
            if kind is Exchange or kind is Write:
                out = cast(Exchange, step).data
                if out:
                    self._write(out)
                    # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2).
                    progress = time.monotonic()
                if kind is Exchange:
                    data = self._read(progress + self._reply_timeout())
            elif kind is Handshake:
                self._handshake(time.monotonic() + self.timeout)
                progress = time.monotonic()
            else:
                return cast(Event, step)

    # -- the socket ----------------------------------------------------------------------

    def _full_timeout(self) -> None:
        """Give the socket the whole timeout again (a read may have lowered it)."""
        if self._read_timeout != self.timeout and self._sock is not None:
            self._read_timeout = self.timeout
            self._sock.settimeout(self.timeout)

    def _write(self, data: bytes) -> None:
        assert self._sock is not None
        self._full_timeout()
        try:
            # sendall's timeout bounds the whole call: in pieces, a large message on a slow
            # but steady link is bounded by progress instead.
            if len(data) <= _WRITE_PIECE:
                self._sock.sendall(data)
            else:
                view = memoryview(data)
                for start in range(0, len(data), _WRITE_PIECE):
                    self._sock.sendall(view[start : start + _WRITE_PIECE])
        except TimeoutError as exc:
            raise self._abandon(self._write_timed_out()) from exc
        except OSError:
            self._drain()

    def _abandon(self, error: SMTPError) -> SMTPError:
        """Give up on the connection: unfinished messages get ``error`` (uncertain or not sent)."""
        self.session.close(error)
        self.close()
        return error

    def _drain(self) -> None:
        """The write failed: the server may have said why (421) before it closed. The engine
        reads what arrived, then the close, and reports it as for any other close."""
        sock = self._sock
        assert sock is not None
        try:
            sock.settimeout(1.0)
            for _ in range(64):  # bounded: what a server sends before closing is small
                data = sock.recv(_RECV_SIZE)
                if not data or self._closed():
                    break
                self.session.receive_data(data)
        except OSError:
            pass
        if not self._closed():
            self.session.receive_data(b"")

    def _read(self, deadline: float) -> bytes:
        sock = self._sock
        assert sock is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._abandon(self._reply_timed_out())
            if remaining < self._read_timeout:
                # Lowered only when a reply spans several reads: settimeout costs two fcntl calls.
                self._read_timeout = remaining
                sock.settimeout(remaining)
            try:
                if _QUICKACK is not None:
                    # Peers that never set TCP_NODELAY stall ~40 ms on delayed ACKs otherwise.
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                return sock.recv(_RECV_SIZE)
            except TimeoutError:
                # The socket's timeout may be shorter than this deadline (left from a handshake
                # or an earlier reply): the loop decides whether the deadline itself has passed.
                self._read_timeout = float("inf")
            except ssl.SSLError as exc:
                raise self._abandon(TLSError(f"TLS error while reading: {exc}")) from exc
            except OSError:
                return b""  # a reset counts as the server closing; the engine decides if that is an error

    def _handshake(self, deadline: float) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock = self._context().wrap_socket(self._sock, server_hostname=self.server_hostname)
        except OSError as exc:  # ssl.SSLError and CertificateError are OSErrors
            raise self._handshake_failed(exc) from exc
        self.encrypted = True

    def _flush_and_close(self) -> None:
        # The engine may have queued a polite QUIT before reporting the error.
        out = self.session.data_to_send()
        if out and self._sock is not None:
            try:
                self._sock.settimeout(1.0)
                self._sock.sendall(out)
            except OSError:
                pass
        self.close()
