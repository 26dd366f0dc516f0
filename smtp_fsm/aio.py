"""The asyncio driver: a transport, the engine, and a deadline per reply."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import cast

from ._aio_io import Link, ReplyDeadline
from ._driver import Operation, Operations, PumpUntil, Readable, T, awaiting, ready_event, wait_ready
from .errors import LocalProtocolError, SMTPError, TLSError
from .events import Event
from .pump import Exchange, Handshake, Pump, Write
from .session import replies_read


class AsyncSMTPClient(Operations):
    """asyncio SMTP/LMTP client.  ``async with AsyncSMTPClient(host) as smtp: await smtp.send_message(msg)``.

    Cancelling a call closes the connection: a transaction is never left
    half-way for reuse.
    """

    _link: Link | None = None
    _readable: Readable | None = None  # whether the kernel holds bytes that the loop has not read yet

    # The API, written once in _driver.Operations; this driver answers its I/O requests (_run).
    sendmail, send_message, send_many = (awaiting(Operations._sendmail), awaiting(Operations._send_message),
                                         awaiting(Operations._send_many))
    noop, rset, quit = awaiting(Operations._noop), awaiting(Operations._rset), awaiting(Operations._quit)

    async def connect(self) -> AsyncSMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        if self._link is not None:
            raise LocalProtocolError("already connected")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                transport, self._link = await loop.create_connection(
                    Link, self.host, self.port, family=self.family, local_addr=self.source_address)
        except OSError as exc:  # TimeoutError is one
            raise self._connect_failed(exc) from exc
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None:
                self._readable = Readable(sock.fileno())
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # reset right after the accept: reading the greeting reports it
        # Either is None after such a reset; the session then reads the end and reports it.
        self._peer_facts(transport.get_extra_info("sockname"), transport.get_extra_info("peername"))
        try:
            if self.tls:
                # The handshake apart from the connect, as in the blocking driver: a refused
                # connection is SMTPConnectError, a handshake cut or refused is TLSError.
                await self._handshake()
            self.ready = ready_event(await self._pump(wait_ready))
        except BaseException:
            self.close()
            raise
        return self

    async def __aenter__(self) -> AsyncSMTPClient:
        return await self.connect()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if (self._link is not None and not self._closed() and not self._buffered()
                    and not isinstance(exc, asyncio.CancelledError)):
                await self.quit()
        except SMTPError:
            pass
        finally:
            self.close()

    def _is_connected(self) -> bool:
        return self._link is not None

    def close(self) -> None:
        """Close the transport without QUIT (the engine is released too)."""
        if self._link is not None:
            if self._link.transport is not None:
                self._link.transport.close()
            self._link = None
        self.session.close()

    # -- answering the operations' requests ----------------------------------------------

    async def _run(self, op: Operation[T]) -> T:
        request = next(op)
        while True:
            try:
                try:
                    result: Event | None = None
                    if type(request) is PumpUntil:
                        result = await self._pump(request.until)
                    elif self._idle_news():
                        await self._absorb()
                except BaseException as exc:  # thrown into the operation, which may attach what it knows
                    request = op.throw(exc)
                else:
                    request = op.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _idle_news(self) -> bool:
        """Whether the idle connection received anything (or the session ended): the common
        answer, no, costs one system call and no loop turn."""
        link = self._link
        assert link is not None
        return bool(link.chunks or link.ended or self.session.error is not None
                    or (self._readable is not None and self._readable()))

    async def _absorb(self) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close)."""
        link = self._link
        assert link is not None
        if not link.chunks and not link.ended and self._readable is not None and self._readable():
            # The kernel holds bytes (a 421, the close) that the loop has not read yet, because
            # this task kept it busy: let it run a few turns to take them in.
            for _ in range(8):  # bounded: the transport reads them on the loop's next turns
                await asyncio.sleep(0)
                if link.chunks or link.ended:
                    break
        self._take_arrived()
        if self.session.error is not None:
            await self._flush_and_close()

    def _take_arrived(self) -> None:
        link = self._link
        assert link is not None
        if link.chunks and not self._closed():
            data = b"".join(link.chunks)
            link.chunks = []
            self.session.receive_data(data)
        if link.ended and not self._closed():
            self.session.receive_data(b"")

    async def _pump(self, until: Callable[[Event], bool]) -> Event:
        if self._link is None:
            raise LocalProtocolError("not connected")
        session = self.session
        steps = Pump(session, until)
        seen, data = replies_read(session), None
        deadline = ReplyDeadline(self._reply_timeout, self.timeout)
        try:
            while True:
                try:
                    step = steps.advance(data)
                except SMTPError:
                    await self._flush_and_close()
                    raise
                if data is not None and replies_read(session) != seen:
                    # A reply: the next one gets its own whole timeout, which is shorter than
                    # the one armed when the reply just read was the final one.
                    seen = replies_read(session)
                    deadline.moved()
                    deadline.check()
                data = None
                kind = type(step)
                if kind is Exchange or kind is Write:
                    out = cast(Exchange, step).data
                    if out:
                        await self._write(out, deadline)
                    if kind is Exchange:
                        data = await self._read()
                elif kind is Handshake:
                    await self._handshake()
                    deadline.moved()
                else:
                    return cast(Event, step)
        except asyncio.CancelledError:
            if not deadline.expired:
                self.close()  # the caller cancelled: never leave a transaction half-way for reuse
                raise
            if deadline.task is not None and deadline.task.uncancel() > 0:
                self.close()
                raise  # the caller cancelled in the same turn: its cancellation wins (and closes)
            error = self._write_timed_out() if deadline.expired_writing else self._reply_timed_out()
            session.close(error)  # unfinished messages: uncertain or not sent, with this error
            self.close()
            raise error from None
        finally:
            deadline.cancel()

    async def _write(self, data: bytes, deadline: ReplyDeadline) -> None:
        link = self._link
        assert link is not None
        if link.transport is None or link.transport.is_closing():
            # The server left: it may have said why (421) first.  The engine reads that and
            # the end, and reports them as for any other close (as the blocking driver does).
            link.ended = True
            self._take_arrived()
            return
        transport = link.transport
        transport.write(data)
        if link.paused is not None:
            # The transport's buffer is full: wait until it drains, bounded by progress.
            deadline.draining, deadline.unwritten = transport.get_write_buffer_size, transport.get_write_buffer_size()
            try:
                await link.paused
            finally:
                deadline.draining = None
        # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2), and what is
        # awaited may have changed (a data_timeout below timeout).
        deadline.moved()
        deadline.check()

    async def _read(self) -> bytes:
        assert self._link is not None
        try:
            return await self._link.read()
        except ssl.SSLError as exc:
            error = TLSError(f"TLS error while reading: {exc}")
            self.session.close(error)
            self.close()
            raise error from exc

    async def _handshake(self) -> None:
        link = self._link
        assert link is not None and link.transport is not None
        try:
            async with asyncio.timeout(self.timeout):
                transport = await asyncio.get_running_loop().start_tls(
                    link.transport, link, self._context(), server_hostname=self.server_hostname)
        except OSError as exc:  # TimeoutError, SSLError and a cut connection are all OSErrors
            self.close()
            raise self._handshake_failed(exc) from exc
        if transport is None:
            self.close()
            raise TLSError(f"TLS handshake with {self.host}:{self.port} failed: the connection closed")
        link.transport = transport
        self.encrypted = True

    async def _flush_and_close(self) -> None:
        # The engine may have queued a polite QUIT before reporting the error.
        out = self.session.data_to_send()
        link = self._link
        if out and link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(out)
        self.close()
