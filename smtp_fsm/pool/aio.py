"""``AsyncSMTPPool``: up to ``max_connections`` ``AsyncSMTPClient`` connections sending what is submitted.

Each connection is one task running a ``Connection``'s steps: wait, connect, ``send_many`` a batch
(pipelined, a BDAT window where the server allows), QUIT.  The decisions are ``Connection``'s and
the ledger's; here are only the waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable

from ..aio import AsyncSMTPClient
from ..errors import LocalProtocolError, PoolClosed, SMTPError
from ..results import SendResult
from ..session import MessageItem
from .base import PoolBase
from .connection import Connection, Idle, Open, Quit
from .ledger import Job, Sent, job_for


class AsyncSMTPPool(PoolBase[AsyncSMTPClient]):
    """Connections to one server, shared by every message submitted: ``await pool.submit(item)`` gives
    a future of its ``SendResult``; ``async for sent in pool.send_all(items)`` streams ``Sent(key,
    result)`` as messages finish.  The keywords after the pool's own are ``AsyncSMTPClient``'s."""

    client_class = AsyncSMTPClient
    # made on first use, in the caller's event loop
    _room: Room
    _drained: asyncio.Event

    def _init_waits(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        #: The connections waiting for work, the last to wait last: a submission wakes one (the
        #: warmest), not all of them; the one it woke wakes the next if work is left over.
        self._idlers: list[asyncio.Future[None]] = []

    # -- the caller's side ---------------------------------------------------------------

    async def __aenter__(self) -> AsyncSMTPPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(self, item: MessageItem, *, key: Hashable = None) -> asyncio.Future[SendResult]:
        """Queue one message (a ``send_many`` item); waits while ``max_pending`` are unfinished.  A bad
        item raises ``LocalProtocolError`` at once."""
        job = job_for(item, key)
        job.waiter = future = asyncio.get_running_loop().create_future()
        await self._submit(job)
        return future

    async def send_all(self, items: Iterable[MessageItem], *,
                       key: Callable[[MessageItem], Hashable] | None = None) -> AsyncIterator[Sent]:
        """Send every item, yielding ``Sent(key, result)`` as each finishes (``key``: the item's index
        unless a function gives one).  At most ``max_pending`` items are read ahead of the results."""
        inbox = _Inbox()
        finished = inbox.finished
        outstanding = 0
        limit = self.settings.max_pending
        for index, item in enumerate(items):
            while outstanding >= limit:  # results not yet taken count too: memory stays bounded
                outstanding -= 1
                yield await inbox.get()
            job = job_for(item, key(item) if key is not None else index)
            job.inbox = inbox
            await self._submit(job)
            outstanding += 1
            while finished:
                outstanding -= 1
                yield finished.popleft()
        while outstanding:
            outstanding -= 1
            yield await inbox.get()

    async def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` seconds for every submitted message, then stop what is left: a message
        whose content never left is ``not_sent``, one whose content left is ``uncertain``."""
        self._closing = True
        if not self._started:
            return
        self._wake(everyone=True)
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            error = PoolClosed(f"the pool was closed with messages unfinished after {timeout} s")
            self._resolve(self._ledger.stop(error))
            for client in list(self._active):
                client._interrupt()
            self._wake(everyone=True)
        tasks = list(self._tasks)
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=max(timeout, 1.0))
        for task in stuck:  # (bounded: a connection the interrupt did not end)
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=1.0)

    # -- the connections ---------------------------------------------------------------

    async def _submit(self, job: Job) -> None:
        if self._closing:
            raise PoolClosed("the pool is closed")
        self._start()
        waiting = self._room.acquire()
        if waiting is not None:
            await waiting
        if self._closing:  # (closed while this waited for room: the connections may be gone)
            self._room.release()
            raise PoolClosed("the pool is closed")
        ledger = self._ledger
        ledger.add(job)
        self._drained.clear()
        if ledger.fatal is not None:
            self._resolve(ledger.fail_all(ledger.fatal))
        else:
            self._wake()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._drained = asyncio.Event()
        self._room = Room(self.settings.max_pending)
        for number in range(self.settings.max_connections):
            task = asyncio.get_running_loop().create_task(self._connection(), name=f"smtp-pool-{number}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake(self, everyone: bool = False) -> None:
        """Wake a connection waiting for work (``everyone``: all of them, to see the pool close)."""
        idlers = self._idlers
        while idlers:
            waiter = idlers.pop()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    def _resolve(self, finished: list[Job]) -> None:
        room = self._room
        for job in finished:
            room.release()
            self._deliver(job)
        if self._ledger.outstanding == 0:
            self._drained.set()
            if self._winding_down():
                self._wake(everyone=True)

    async def _connection(self) -> None:
        """One connection's life, again and again (the decisions are ``Connection``'s)."""
        connection = Connection(self)
        try:
            while (step := connection.next_step(time.monotonic())) is not None:
                if isinstance(step, Idle):
                    await self._idle(step.until)
                    continue
                if not self._ledger.idle():
                    # More than this connection took, or a retry it may have been waiting to send
                    # when the wake-up came: the next waiting connection takes it (or its time).
                    self._wake()
                if isinstance(step, Quit):
                    await self._retire(step.client)
                    continue
                if isinstance(step, Open):
                    await asyncio.sleep(step.delay)
                    try:
                        client = await self._new_client().connect()
                    except SMTPError as refused:
                        finished, pause = connection.open_failed(refused, time.monotonic())
                        self._resolve(finished)
                        await asyncio.sleep(pause)
                        continue
                    step = connection.opened(client, time.monotonic())
                if step.delay:
                    await asyncio.sleep(step.delay)
                withdrawn = connection.sending()
                if withdrawn is not None:
                    self._resolve(withdrawn)
                    continue
                results: list[SendResult] | None = None
                cut: SMTPError | None = None
                try:
                    results = await step.client._send_many(step.batch)
                except LocalProtocolError as refused:  # (nothing was queued)
                    finished, cut = connection.refused_locally(refused)
                    if cut is None:
                        self._resolve(finished)
                        continue
                except SMTPError as exc:
                    cut = exc
                finished, dropped = connection.sent(results, cut, time.monotonic())
                self._resolve(finished)
                if dropped is not None:
                    self._drop(dropped)
        except Exception as exc:  # a bug: fail loudly, never leave a caller waiting
            self._resolve(connection.broken(exc))
            raise
        finally:
            self._resolve(connection.ended())  # (cancelled: close gave up on this connection)
            if connection.client is not None:
                self._drop(connection.client)

    async def _idle(self, until: float | None) -> None:
        """Until work comes, or ``until``: the next delayed message is due, or the connection idled enough."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idlers.append(waiter)
        try:
            async with asyncio.timeout(None if until is None else max(until - time.monotonic(), 0.0)):
                await waiter
        except TimeoutError:
            pass
        finally:
            if waiter in self._idlers:  # (timed out, or cancelled: not woken)
                self._idlers.remove(waiter)

    async def _retire(self, client: AsyncSMTPClient) -> None:
        """A polite QUIT (max_messages_per_connection reached, or idle)."""
        try:
            await client.quit()
        except SMTPError:
            client.close()
        self._keep_trace(client)


class _Inbox:
    """``send_all``'s finished messages: the pool appends, ``send_all`` takes (waking it only when it
    waits, not once per message as a future each would)."""

    __slots__ = ("finished", "waiter")

    def __init__(self) -> None:
        self.finished: deque[Sent] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, sent: Sent) -> None:
        self.finished.append(sent)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Sent:
        while not self.finished:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.finished.popleft()


class Room:
    """How many more messages may be submitted (``max_pending``): a semaphore whose ``acquire`` costs
    no coroutine while there is room (asyncio's, 3.11, scans its waiters on every call), first come
    first served when there is none."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future[None]] = deque()

    def acquire(self) -> Awaitable[None] | None:
        """None when taken at once; else await what it returns (FIFO)."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return None
        return self._wait()

    async def _wait(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # (handed a place just as it was cancelled: pass it on)
            elif waiter in self.waiters:  # (release skips and drops a cancelled waiter itself)
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        """A place is free: the first waiter takes it, else it waits for the next ``acquire``."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
