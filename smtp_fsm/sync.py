"""The blocking driver: a socket, the engine, and a deadline per reply."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from types import TracebackType
from typing import Any

from ._driver import (
    Collector,
    DriverBase,
    Readable,
    SendItem,
    command_reply,
    message_item,
    ready_event,
    reusable,
    reusable_item,
    single_result,
    wait_closed,
    wait_command,
    wait_ready,
)
from .errors import LocalProtocolError, SMTPConnectError, SMTPError, SMTPTimeout, TLSError
from .events import NEED_DATA, SessionEvent, StartTLS
from .replies import Reply
from .results import SendResult
from .session import Notify, replies_read, session_error

_RECV_SIZE = 65536
_WRITE_PIECE = 1 << 20
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class SMTPClient(DriverBase):
    """Blocking SMTP/LMTP client.  ``with SMTPClient(host) as smtp: smtp.send_message(msg)``."""

    _sock: socket.socket | None = None
    _read_timeout = 0.0  # what the socket's timeout is set to now
    _readable: Readable

    def connect(self) -> SMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        if self._sock is not None:
            raise LocalProtocolError("already connected")
        deadline = time.monotonic() + self.timeout
        try:
            sock = self._open_socket()
        except TimeoutError as exc:
            raise SMTPConnectError(f"cannot connect to {self.host}:{self.port}: timed out after "
                                   f"{self.timeout} s") from exc
        except ConnectionResetError as exc:
            raise self._reset_at_connect() from exc
        except OSError as exc:
            raise SMTPConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._sock = sock
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
            address = (str(sockaddr[0]), self.port)
            try:
                return socket.create_connection(address, self.timeout, self.source_address)
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

    # -- the API -----------------------------------------------------------------

    def sendmail(self, from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message, *,
                 mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (), notify: Notify | None = None,
                 ret: str | None = None, envid: str | None = None) -> SendResult:
        """Send one message (bytes or str, or a ``Message``) as given; its ``SendResult``.

        Raises when the message went to nobody (``SenderRefused``, ``RecipientsRefused``, ``DataRefused``).
        """
        to_addrs = reusable(to_addrs)
        items: list[SendItem] = [(from_addr, to_addrs, msg)]
        self._before_work(items)
        ticket = self.session.sendmail(from_addr, to_addrs, msg,
                                       mail_options=mail_options, rcpt_options=rcpt_options, notify=notify,
                                       ret=ret, envid=envid)
        return single_result(self._results([ticket], items)[0])

    def send_message(self, msg: Message, from_addr: str | None = None, to_addrs: str | Iterable[str] | None = None,
                     *, mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (),
                     notify: Notify | None = None, ret: str | None = None, envid: str | None = None) -> SendResult:
        """Send an ``email`` message; the envelope comes from its headers unless given."""
        to_addrs = reusable(to_addrs) if to_addrs is not None else None
        items = [message_item(msg, from_addr, to_addrs)]
        self._before_work(items)
        ticket = self.session.send_message(msg, from_addr, to_addrs,
                                       mail_options=mail_options, rcpt_options=rcpt_options, notify=notify,
                                       ret=ret, envid=envid)
        return single_result(self._results([ticket], items)[0])

    def send_many(self, items: Iterable[SendItem]) -> list[SendResult]:
        """Send every message over this connection; one result per message, in order.

        A message the server refuses does not stop the others: its result
        carries the error.  An error that cuts the batch short (421, the
        connection's end, a timeout) carries ``completed``, ``uncertain`` and
        ``unsent``.
        """
        batch = [reusable_item(item) for item in items]
        self._before_work(batch)
        return self._results(self.session.send_many(batch), batch)

    def noop(self) -> Reply:
        """Send NOOP; the server's reply."""
        self._before_work([])
        return command_reply(self._pump(wait_command(self.session.noop())))

    def rset(self) -> Reply:
        """Send RSET; the server's reply."""
        self._before_work([])
        return command_reply(self._pump(wait_command(self.session.rset())))

    def quit(self) -> Reply | None:
        """Send QUIT and close; returns the 221 (None if the server just closed)."""
        self._begin_quit()
        try:
            closed = self._pump(wait_closed)
        finally:
            self.close()
        return getattr(closed, "reply", None)

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

    # -- moving bytes --------------------------------------------------------------

    def _before_work(self, items: list[Any]) -> None:
        """No transaction starts on a dead connection: take in what the idle server sent."""
        self._require_connection()
        self._absorb()
        if session_error(self.session) is not None:
            self._flush_and_close()
            self._refuse_on_ended_session(items)

    def _absorb(self) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close), without waiting."""
        sock = self._sock
        assert sock is not None
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending and not self._readable():
            return  # the common case: nothing arrived, one system call
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

    def _results(self, tickets: list[int], items: list[Any]) -> list[SendResult]:
        collector = Collector(self.session, tickets)
        if tickets:
            try:
                self._pump(collector.take)
            except SMTPError as exc:
                raise collector.interrupted(exc, tickets, items) from None
        return collector.ordered(tickets)

    def _pump(self, until: Callable[[SessionEvent], bool]) -> SessionEvent:
        if self._sock is None:
            raise LocalProtocolError("not connected")
        session = self.session
        seen = replies_read(session)
        progress = time.monotonic()
        while True:
            out = session.data_to_send()
            if out:
                self._write(out)
                # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2: the
                # timeouts run while awaiting a reply); the write itself is bounded by progress.
                progress = time.monotonic()
            try:
                event = session.next_event()
            except SMTPError:
                self._flush_and_close()
                raise
            if event is NEED_DATA:
                session.receive_data(self._read(progress + self._reply_timeout()))
                if replies_read(session) != seen:
                    # A complete reply: the next one gets a whole timeout.
                    seen = replies_read(session)
                    progress = time.monotonic()
                    self._full_timeout()
                continue
            if isinstance(event, StartTLS):
                self._handshake(time.monotonic() + self.timeout)
                session.tls_established()
                progress = time.monotonic()
                continue
            if until(event):
                return event

    def _full_timeout(self) -> None:
        """Give the socket the whole timeout again (a read may have lowered it)."""
        if self._read_timeout != self.timeout and self._sock is not None:
            self._read_timeout = self.timeout
            self._sock.settimeout(self.timeout)

    def _write(self, data: bytes) -> None:
        assert self._sock is not None
        self._full_timeout()
        try:
            if len(data) <= _WRITE_PIECE:
                self._sock.sendall(data)
            else:
                # sendall's timeout bounds the whole call: in pieces, a large message on a slow
                # but steady link is bounded by progress instead.
                view = memoryview(data)
                for start in range(0, len(data), _WRITE_PIECE):
                    self._sock.sendall(view[start : start + _WRITE_PIECE])
        except TimeoutError as exc:
            error = SMTPTimeout(f"writing to {self.host}:{self.port}: no progress within {self.timeout} s "
                                f"(in state {self.session.state!r})")
            self._abandon(error)
            raise error from exc
        except OSError:
            self._drain()

    def _abandon(self, error: SMTPError) -> None:
        """Give up on the connection: unfinished messages get ``error`` (uncertain or not sent)."""
        self.session.close(error)
        self.close()

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
                error = self._reply_timed_out()
                self._abandon(error)
                raise error
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
            except OSError as exc:
                if isinstance(exc, ssl.SSLError):
                    broken = TLSError(f"TLS error while reading: {exc}")
                    self._abandon(broken)
                    raise broken from exc
                return b""  # a reset counts as the server closing; the engine decides if that is an error

    def _handshake(self, deadline: float) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock = self._context().wrap_socket(self._sock, server_hostname=self.server_hostname)
            self.encrypted = True
        except OSError as exc:  # a timeout, a certificate refused, the server cutting the handshake
            raise self._handshake_failed(exc) from exc

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
