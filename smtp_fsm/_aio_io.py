"""asyncio plumbing for the asyncio driver: the transport's bytes, and the per-reply deadline timer."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable


class Link(asyncio.Protocol):
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


class ReplyDeadline:
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
