"""The asyncio driver: streams, the engine, and a deadline per reply."""

from __future__ import annotations

import asyncio
import socket
import ssl
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


class _Link(asyncio.Protocol):
    """The transport's bytes, kept until the pump asks: one future per wait, no StreamReader.

    Streams cost an extra buffer copy and loop turn per read, and ``drain`` per write;
    this keeps only what the pump needs: received chunks, the end, and write flow control.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def pause_writing(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self) -> bytes:
        """What arrived since the last read (waits for something); ``b""`` at the end."""
        if not self.chunks and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.chunks:
            data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
            return data
        if isinstance(self.error, ssl.SSLError):
            raise self.error
        return b""


class _ReplyDeadline:
    """The per-reply deadline with one timer that is moved lazily.

    Replies arrive far more often than deadlines expire, so a reply only notes the
    time; when the timer fires it either re-arms for the latest reply's deadline or
    cancels the waiting task.  (Rescheduling a timeout at every reply cost about as
    much as parsing the reply.)  While a large write drains, ``timeout`` bounds its
    progress instead, as the blocking driver's pieces do: a slow but steady upload is
    not cut, a stalled one is.
    """

    def __init__(self, limit: Callable[[], float], timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.limit = limit  # the timeout for the reply awaited now (data_timeout for the final one)
        self.timeout = timeout
        self.progress = self.loop.time()
        self.expired = False
        self.expired_writing = False
        self.draining: Callable[[], int] | None = None  # the write buffer's size, while a write drains
        self.unwritten = 0
        self.due = self.progress + limit()
        self.handle = self.loop.call_at(self.due, self._fire)

    def moved(self) -> None:
        self.progress = self.loop.time()

    def check(self) -> None:
        """Bring the timer forward when the reply awaited now has a shorter limit than it was
        armed for (a reply after the final one, or a data_timeout below timeout); a longer one
        needs nothing: the timer re-arms when it fires."""
        due = self.progress + self.limit()
        if due < self.due:
            self.handle.cancel()
            self.due = due
            self.handle = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        if self.draining is not None:
            unwritten = self.draining()
            if unwritten < self.unwritten:  # the server is taking the data: progress
                self.unwritten, self.progress = unwritten, now
            due = self.progress + self.timeout
        else:
            due = self.progress + self.limit()
        if due > now:
            self.due = due
            self.handle = self.loop.call_at(due, self._fire)
        elif self.task is not None:
            self.expired = True
            self.expired_writing = self.draining is not None  # the write's finally clears draining
            self.task.cancel()

    def cancel(self) -> None:
        self.handle.cancel()


class AsyncSMTPClient(DriverBase):
    """asyncio SMTP/LMTP client.  ``async with AsyncSMTPClient(host) as smtp: await smtp.send_message(msg)``.

    Cancelling a call closes the connection: a transaction is never left
    half-way for reuse.
    """

    _link: _Link | None = None
    _readable: Readable | None = None  # whether the kernel holds bytes that the loop has not read yet

    async def connect(self) -> AsyncSMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        if self._link is not None:
            raise LocalProtocolError("already connected")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                transport, self._link = await loop.create_connection(
                    _Link, self.host, self.port, family=self.family, local_addr=self.source_address)
        except TimeoutError as exc:
            raise SMTPConnectError(f"cannot connect to {self.host}:{self.port}: timed out after "
                                   f"{self.timeout} s") from exc
        except ConnectionResetError as exc:
            raise self._reset_at_connect() from exc
        except OSError as exc:
            raise SMTPConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
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

    # -- the API -----------------------------------------------------------------

    async def sendmail(self, from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message, *,
                       mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (),
                       notify: Notify | None = None, ret: str | None = None, envid: str | None = None) -> SendResult:
        """Send one message (bytes or str, or a ``Message``) as given; its ``SendResult``.

        Raises when the message went to nobody (``SenderRefused``, ``RecipientsRefused``, ``DataRefused``).
        """
        to_addrs = reusable(to_addrs)
        items: list[SendItem] = [(from_addr, to_addrs, msg)]
        await self._before_work(items)
        ticket = self.session.sendmail(from_addr, to_addrs, msg,
                                       mail_options=mail_options, rcpt_options=rcpt_options, notify=notify,
                                       ret=ret, envid=envid)
        return single_result((await self._results([ticket], items))[0])

    async def send_message(self, msg: Message, from_addr: str | None = None,
                           to_addrs: str | Iterable[str] | None = None, *,
                           mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (),
                           notify: Notify | None = None, ret: str | None = None,
                           envid: str | None = None) -> SendResult:
        """Send an ``email`` message; the envelope comes from its headers unless given."""
        to_addrs = reusable(to_addrs) if to_addrs is not None else None
        items = [message_item(msg, from_addr, to_addrs)]
        await self._before_work(items)
        ticket = self.session.send_message(msg, from_addr, to_addrs,
                                       mail_options=mail_options, rcpt_options=rcpt_options, notify=notify,
                                       ret=ret, envid=envid)
        return single_result((await self._results([ticket], items))[0])

    async def send_many(self, items: Iterable[SendItem]) -> list[SendResult]:
        """As ``SMTPClient.send_many``: one result per message, pipelined when the server allows."""
        batch = [reusable_item(item) for item in items]
        await self._before_work(batch)
        return await self._results(self.session.send_many(batch), batch)

    async def noop(self) -> Reply:
        """Send NOOP; the server's reply."""
        await self._before_work([])
        return command_reply(await self._pump(wait_command(self.session.noop())))

    async def rset(self) -> Reply:
        """Send RSET; the server's reply."""
        await self._before_work([])
        return command_reply(await self._pump(wait_command(self.session.rset())))

    async def quit(self) -> Reply | None:
        """Send QUIT and close; returns the 221 (None if the server just closed)."""
        self._begin_quit()
        try:
            closed = await self._pump(wait_closed)
        finally:
            self.close()
        return getattr(closed, "reply", None)

    def _is_connected(self) -> bool:
        return self._link is not None

    def close(self) -> None:
        """Close the connection without QUIT (the engine is released too)."""
        if self._link is not None:
            if self._link.transport is not None:
                self._link.transport.close()
            self._link = None
        self.session.close()

    # -- moving bytes --------------------------------------------------------------

    async def _before_work(self, items: list[Any]) -> None:
        """No transaction starts on a dead connection: take in what the idle server sent."""
        self._require_connection()
        link = self._link
        assert link is not None
        if not link.chunks and not link.ended and self._readable is not None and self._readable():
            # The kernel holds bytes (a 421, the close) that the loop has not read yet, because
            # this task kept it busy: let it run a few turns to take them in.
            for _ in range(8):  # bounded: the transport reads them on the loop's next turns
                await asyncio.sleep(0)
                if link.chunks or link.ended:
                    break
        self._absorb()
        if session_error(self.session) is not None:
            await self._flush_and_close()
            self._refuse_on_ended_session(items)

    def _absorb(self) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close)."""
        link = self._link
        assert link is not None
        session = self.session
        if link.chunks and not self._closed():
            data = b"".join(link.chunks)
            link.chunks = []
            session.receive_data(data)
        if link.ended and not self._closed():
            session.receive_data(b"")

    async def _results(self, tickets: list[int], items: list[Any]) -> list[SendResult]:
        collector = Collector(self.session, tickets)
        if tickets:
            try:
                await self._pump(collector.take)
            except SMTPError as exc:
                raise collector.interrupted(exc, tickets, items) from None
        return collector.ordered(tickets)

    async def _pump(self, until: Callable[[SessionEvent], bool]) -> SessionEvent:
        if self._link is None:
            raise LocalProtocolError("not connected")
        try:
            return await self._pump_events(until)
        except asyncio.CancelledError:
            self.close()  # never leave a transaction half-way for reuse
            raise

    async def _pump_events(self, until: Callable[[SessionEvent], bool]) -> SessionEvent:
        session = self.session
        seen = replies_read(session)
        deadline = _ReplyDeadline(self._reply_timeout, self.timeout)
        try:
            while True:
                out = session.data_to_send()
                if out:
                    await self._write(out, deadline)
                try:
                    event = session.next_event()
                except SMTPError:
                    await self._flush_and_close()
                    raise
                if event is NEED_DATA:
                    if replies_read(session) != seen:
                        # A reply: the next one gets its own whole timeout, which is shorter
                        # than the one armed when the reply just read was the final one.
                        seen = replies_read(session)
                        deadline.moved()
                        deadline.check()
                    session.receive_data(await self._read())
                    continue
                if isinstance(event, StartTLS):
                    await self._handshake()
                    deadline.moved()
                    session.tls_established()
                    continue
                if until(event):
                    return event
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            if deadline.task is not None and deadline.task.uncancel() > 0:
                raise  # the caller cancelled in the same turn: its cancellation wins (and closes)
            if deadline.expired_writing:
                error = SMTPTimeout(f"writing to {self.host}:{self.port}: no progress within {self.timeout} s "
                                    f"(in state {session.state!r})")
            else:
                error = self._reply_timed_out()
            session.close(error)  # unfinished messages: uncertain or not sent, with this error
            self.close()
            raise error from None
        finally:
            deadline.cancel()

    async def _write(self, data: bytes, deadline: _ReplyDeadline) -> None:
        link = self._link
        assert link is not None
        if link.transport is None or link.transport.is_closing():
            # The server left: it may have said why (421) first.  The engine reads that and
            # the end, and reports them as for any other close (as the blocking driver does).
            link.ended = True
            self._absorb()
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
        # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2: the
        # timeouts run while awaiting a reply), as in the blocking driver; what is awaited
        # may have changed (a data_timeout below timeout).
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
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                transport = await loop.start_tls(link.transport, link, self._context(),
                                                 server_hostname=self.server_hostname)
        except OSError as exc:  # a timeout, a certificate refused, the server cutting the handshake
            error = self._handshake_failed(exc)
            self.close()
            raise error from exc
        if transport is None:
            error = self._handshake_failed(ConnectionError("the connection closed"))
            self.close()
            raise error
        link.transport = transport
        self.encrypted = True

    async def _flush_and_close(self) -> None:
        # The engine may have queued a polite QUIT before reporting the error.
        out = self.session.data_to_send()
        link = self._link
        if out and link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(out)
        self.close()
