"""The asyncio driver's transport: a Protocol that keeps what arrived, and a per-reply deadline.

Only bytes and time live here; what they mean is the engine's business and
which error to raise is the driver's.  ``Link.read`` raises ``ssl.SSLError``
for a TLS failure; the deadline cancels the waiting task when it expires and
says whether a reply or a write was late.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ._driver import Readable
from .protocol.table import FINAL_STATES
from .session import ClientSession

#: What one read takes at most.  Replies are short: a read of a pipelined group is a few hundred
#: octets, and more only takes another read.
READ_SIZE = 4096


class Link(asyncio.BufferedProtocol):
    """The transport's bytes, kept until the pump asks: one future per wait, no StreamReader.

    Streams cost an extra buffer copy and loop turn per read, and ``drain`` per write;
    this keeps only what the pump needs: received chunks, the end, and write flow control.
    The transport reads into one buffer of this link's (a buffered protocol): asyncio's plain
    protocols get each read in a new 256 KiB bytes object, which the C library maps, shrinks and
    unmaps -- three system calls per reply, more than the read itself.
    """

    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(READ_SIZE))
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused: asyncio.Future[None] | None = None
        #: Whether the kernel holds bytes that the loop has not read yet (one system call).
        self.readable: Readable | None = None
        #: While the pump waits: takes what arrives in the transport's callback and carries the
        #: exchange on (returns True), so the waiting task is woken only when it has to act.
        self.pilot: Callable[[bytes], bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        pilot = self.pilot
        if pilot is not None and not self.chunks and pilot(data):
            return
        self.chunks.append(data)
        self.wake()

    def eof_received(self) -> bool:
        self.ended = True
        self.wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self.wake()
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def pause_writing(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    def wake(self) -> None:
        """Wake the task waiting in ``wait`` (bytes came, the end, or the pilot stopped)."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    @classmethod
    async def open(cls, host: str, port: int, family: int, local_addr: tuple[str, int] | None) -> Link:
        """Connect (``OSError`` when that fails), Nagle off."""
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(cls, host, port, family=family, local_addr=local_addr)
        assert link.transport is not None
        sock = link.transport.get_extra_info("socket")
        try:
            if sock is not None:
                link.readable = Readable(sock.fileno())
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # reset right after the accept: reading the greeting reports it
        return link

    def peer(self) -> tuple[Any, Any]:
        """``(sockname, peername)``; either is None after a reset right after the accept (the session
        then reads the end and reports it)."""
        transport = self.transport
        if transport is None:
            return None, None
        return transport.get_extra_info("sockname"), transport.get_extra_info("peername")

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str, timeout: float) -> None:
        """Upgrade the transport to TLS; raises ``OSError`` (a timeout, a refused certificate, a cut)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            transport = await loop.start_tls(self.transport, self, context, server_hostname=server_hostname)
        if transport is None:
            raise ConnectionError("the connection closed")
        self.transport = transport

    async def absorb(self, session: ClientSession) -> None:
        """Feed the engine what arrived while the connection was idle (a 421, the close)."""
        if not self.chunks and not self.ended and self.readable is not None and self.readable():
            # The kernel holds bytes (a 421, the close) that the loop has not read yet, because
            # this task kept it busy: let it run a few turns to take them in.
            for _ in range(8):  # bounded: the transport reads them on the loop's next turns
                await asyncio.sleep(0)
                if self.chunks or self.ended:
                    break
        self.take_buffered(session)

    def take_buffered(self, session: ClientSession) -> None:
        """Feed the engine what the transport has received (and its end), without waiting."""
        if self.chunks and session.state not in FINAL_STATES:
            data = b"".join(self.chunks)
            self.chunks = []
            session.receive_data(data)
        if self.ended and session.state not in FINAL_STATES:
            session.receive_data(b"")

    def write_now(self, data: bytes) -> bool:
        """Hand ``data`` to an open transport that is not paused, without a coroutine (the common
        case, once per message); False: nothing was written, ``write`` is the way.  Once written,
        ``drained`` waits if the write filled the transport's buffer (``paused``)."""
        transport = self.transport
        if self.paused is not None or transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True

    def take_chunks(self) -> bytes:
        """What arrived and was not read yet (``b""`` when nothing did: then ``read`` waits)."""
        chunks = self.chunks
        if not chunks:
            return b""
        self.chunks = []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def write(self, data: bytes, session: ClientSession, deadline: ReplyDeadline) -> None:
        """Write ``data``; wait while the transport's buffer is full, bounded by progress (``deadline``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            # The server left: it may have said why (421) first.  The engine reads that and
            # the end, and reports them as for any other close (as the blocking driver does).
            self.ended = True
            self.take_buffered(session)
            return
        transport.write(data)
        await self.drained(deadline)

    async def drained(self, deadline: ReplyDeadline) -> None:
        """Wait while the transport's buffer is full, bounded by progress (``deadline``)."""
        transport = self.transport
        if self.paused is not None and transport is not None:
            deadline.draining, deadline.unwritten = transport.get_write_buffer_size, transport.get_write_buffer_size()
            try:
                await self.paused
            finally:
                deadline.draining = None

    def flush(self, data: bytes) -> None:
        """Best effort, for a courtesy QUIT queued before an error."""
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def interrupt(self) -> None:
        """At once, without flushing: the pump's read sees the end."""
        if self.transport is not None:
            self.transport.abort()

    async def wait(self) -> None:
        """Until something arrived, the end, or a wake-up (the pilot's)."""
        if not self.chunks and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def read(self) -> bytes:
        """What arrived since the last read (waits for something); ``b""`` at the end."""
        while not self.chunks and not self.ended:
            await self.wait()
        if self.chunks:
            return self.take_chunks()
        if isinstance(self.error, ssl.SSLError):
            raise self.error
        return b""


class ReplyDeadline:
    """The per-reply deadline with one timer that is moved lazily.

    Replies arrive far more often than deadlines expire, so a reply only notes the
    time; when the timer fires it either re-arms for the latest reply's deadline or
    cancels the waiting task.  (Rescheduling a timeout at every reply cost about as
    much as parsing the reply.)  While a large write drains, ``timeout`` bounds its
    progress instead, as the blocking driver's pieces do: a slow but steady upload is
    not cut, a stalled one is.
    """

    def __init__(self, limit: Callable[[], float], timeout: float, seen: int, shortest: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.seen = seen  # complete replies read when the deadline was last restarted
        self.suspended = False  # while a TLS handshake runs (it has its own timeout)
        self.task = asyncio.current_task()
        self.limit = limit  # the timeout for the reply awaited now (data_timeout for the final one)
        self.shortest = shortest  # the least ``limit`` can say
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

    def replies_read(self, count: int) -> None:
        """Before a read: a reply completed since the last one (the count moved) restarts the deadline:
        the next reply gets its own whole timeout, shorter than the one armed for a final reply."""
        if count != self.seen:
            self.seen = count
            self.restart()

    def restart(self) -> None:
        """A reply came or a write ended: the next reply gets its whole (possibly shorter) time."""
        self.moved()
        self.check()

    def caller_cancelled(self) -> bool:
        """A cancellation that is not this deadline's (or came in the same turn as it: the caller wins)."""
        return not self.expired or (self.task is not None and self.task.uncancel() > 0)

    def check(self) -> None:
        """Bring the timer forward when the reply awaited now has a shorter limit than it was
        armed for (a reply after the final one, or a data_timeout below timeout); a longer one
        needs nothing: the timer re-arms when it fires.  (Once the timer is as near as any limit
        could bring it, which is nearly always, this asks nothing of the engine.)"""
        if self.progress + self.shortest >= self.due:
            return
        due = self.progress + self.limit()
        if due < self.due:
            self.handle.cancel()
            self.due = due
            self.handle = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        if self.suspended:  # a TLS handshake runs under its own timeout: its expiry is its to report
            self.handle = self.loop.call_at(now + self.timeout, self._fire)
            return
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
