"""``AsyncSMTPPool``: up to ``max_connections`` ``AsyncSMTPClient`` connections sending what is submitted.

Each connection is one task looping: take a batch from the ledger, connect if need be, ``send_many``
it (pipelined, a BDAT window where the server allows), hand back what became of each message.  The
decisions (what goes again, when, what is final) are the ledger's; here are only the waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from typing import Any

from ..aio import AsyncSMTPClient
from ..errors import LocalProtocolError, PoolClosed, SMTPError
from ..results import SendResult
from ..session import MessageItem
from ..trace import TraceStep
from .ledger import Job, Ledger, RetryPolicy, Sent, connection_gone, job_for, refuse_probes
from .pace import Pace
from .settings import PoolSettings


class AsyncSMTPPool:
    """Connections to one server, shared by every message submitted: ``await pool.submit(item)`` gives
    a future of its ``SendResult``; ``async for sent in pool.send_all(items)`` streams ``Sent(key,
    result)`` as messages finish.  The keywords after the pool's own are ``AsyncSMTPClient``'s."""

    def __init__(self, host: str, port: int | None = None, *, max_connections: int = 4,
                 max_messages_per_connection: int | None = None, idle_timeout: float = 30.0,
                 max_rate: float | None = None, max_connect_rate: float | None = None, max_pending: int = 1000,
                 batch: int = 32, attempts: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 resend_uncertain: bool = False, **client_keywords: Any) -> None:
        retry = RetryPolicy(attempts, backoff, max_backoff, resend_uncertain)
        self.settings = PoolSettings(max_connections, max_messages_per_connection, idle_timeout, max_rate,
                                     max_connect_rate, max_pending, batch, retry)
        #: The connections' settings, checked now (a bad keyword raises here, before any connection).
        self.options = AsyncSMTPClient(host, port, **client_keywords).options
        refuse_probes(self.options)
        self._ledger = Ledger(retry)
        self._pace = Pace(max_rate, "max_rate")
        self._connect_pace = Pace(max_connect_rate, "max_connect_rate")
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[AsyncSMTPClient] = set()
        self._wakeup: asyncio.Event | None = None
        self._room: asyncio.Semaphore | None = None
        self._drained: asyncio.Event | None = None
        self._closing = False
        self._started = False
        #: With ``trace=True``: each closed connection's trace, in the order they closed.
        self.traces: list[list[TraceStep]] = []
        self.connections_opened = 0

    # -- the caller's side ---------------------------------------------------------------

    async def __aenter__(self) -> AsyncSMTPPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(self, item: MessageItem, *, key: Hashable = None) -> asyncio.Future[SendResult]:
        """Queue one message (a ``send_many`` item); waits while ``max_pending`` are unfinished.  A bad
        item raises ``LocalProtocolError`` at once."""
        job = job_for(item, key)
        return await self._submit(job)

    async def send_all(self, items: Iterable[MessageItem], *,
                       key: Callable[[MessageItem], Hashable] | None = None) -> AsyncIterator[Sent]:
        """Send every item, yielding ``Sent(key, result)`` as each finishes (``key``: the item's index
        unless a function gives one).  At most ``max_pending`` items are read ahead of the results."""
        done: asyncio.Queue[Sent] = asyncio.Queue()
        outstanding = 0

        def finished(future: asyncio.Future[SendResult]) -> None:
            done.put_nowait(Sent(keys.pop(future), future.result()))

        keys: dict[asyncio.Future[SendResult], Hashable] = {}
        limit = self.settings.max_pending
        for index, item in enumerate(items):
            while outstanding >= limit:  # results not yet taken count too: memory stays bounded
                outstanding -= 1
                yield await done.get()
            job_key = key(item) if key is not None else index
            future = await self._submit(job_for(item, job_key))
            keys[future] = job_key
            future.add_done_callback(finished)
            outstanding += 1
            while not done.empty():
                outstanding -= 1
                yield done.get_nowait()
        while outstanding:
            outstanding -= 1
            yield await done.get()

    async def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` seconds for every submitted message, then stop what is left: a message
        whose content never left is ``not_sent``, one whose content left is ``uncertain``."""
        self._closing = True
        if not self._started:
            return
        self._wake()
        assert self._drained is not None
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            error = PoolClosed(f"the pool was closed with messages unfinished after {timeout} s")
            self._resolve(self._ledger.stop(error))
            for client in list(self._active):
                client._interrupt()
            self._wake()
        tasks = list(self._tasks)
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=max(timeout, 1.0))
        for task in stuck:  # (bounded: a connection the interrupt did not end)
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=1.0)

    # -- the connections ---------------------------------------------------------------

    async def _submit(self, job: Job) -> asyncio.Future[SendResult]:
        if self._closing:
            raise PoolClosed("the pool is closed")
        self._start()
        assert self._room is not None and self._drained is not None
        await self._room.acquire()
        if self._closing:  # (closed while this waited for room: the connections may be gone)
            self._room.release()
            raise PoolClosed("the pool is closed")
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        job.waiter = future
        ledger = self._ledger
        ledger.add(job)
        self._drained.clear()
        if ledger.fatal is not None:
            self._resolve(ledger.fail_all(ledger.fatal))
        else:
            self._wake()
        return future

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._room = asyncio.Semaphore(self.settings.max_pending)
        for number in range(self.settings.max_connections):
            task = asyncio.get_running_loop().create_task(self._connection(), name=f"smtp-pool-{number}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _resolve(self, finished: list[Job]) -> None:
        assert self._room is not None and self._drained is not None
        for job in finished:
            self._room.release()
            future = job.waiter
            if future is not None and not future.done():
                future.set_result(job.result)
        if self._ledger.outstanding == 0:
            self._drained.set()
            self._wake()  # (connections waiting with nothing to do: closing, they may go)

    async def _connection(self) -> None:
        """One connection's life, again and again: wait for work, connect, send, retire when idle."""
        ledger, settings = self._ledger, self.settings
        client: AsyncSMTPClient | None = None
        sent = 0
        last_used = time.monotonic()
        failures = 0
        held: list[Job] = []  # a batch taken and not settled: withdrawn, or abandoned once sending
        sending = False
        try:
            while True:
                now = time.monotonic()
                batch = ledger.take(now, settings.batch_for(sent)) if ledger.fatal is None else []
                if not batch:
                    if client is not None and ((sent and not settings.batch_for(sent))
                                               or now - last_used >= settings.idle_timeout
                                               or ledger.fatal is not None):
                        await self._retire(client)
                        client, sent = None, 0
                        continue
                    if self._closing and ledger.outstanding == 0:
                        if client is not None:
                            await self._retire(client)
                            client = None
                        return
                    await self._wait(now, None if client is None else last_used + settings.idle_timeout)
                    continue
                held = batch
                if client is None:
                    try:
                        client = await self._connect()
                    except SMTPError as refused:
                        held = []
                        self._resolve(ledger.connect_failed(batch, refused, time.monotonic()))
                        failures += 1
                        await asyncio.sleep(settings.retry.delay(failures + 1, ledger.rng))
                        continue
                    failures, sent = 0, 0
                wait = self._pace.delay(len(batch), time.monotonic())
                if wait:
                    await asyncio.sleep(wait)
                if ledger.stopped is not None:  # (closed past its deadline while this connected)
                    held = []
                    self._resolve(ledger.withdraw(batch, ledger.stopped))
                    continue
                self._active.add(client)
                sending = True
                results: list[SendResult] | None = None
                cut: SMTPError | None = None
                try:
                    results = await client.send_many([job.item for job in batch])
                except LocalProtocolError as refused:  # (nothing was queued)
                    cut = self._refused_locally(client, batch, refused)
                    if cut is None:
                        held, sending = [], False
                        continue
                except SMTPError as exc:
                    cut = exc
                finally:
                    self._active.discard(client)
                self._resolve(ledger.settle(batch, results, cut, time.monotonic()))
                held, sending = [], False
                sent += len(batch)
                last_used = time.monotonic()
                if cut is not None:
                    self._keep_trace(client)
                    client.close()
                    client, sent = None, 0
        except Exception as exc:  # a bug: fail loudly, never leave a caller waiting
            broken = self._broken(exc)
            self._resolve(ledger.abandon(held, broken) + ledger.fail_all(broken))
            held = []
            raise
        finally:
            if held:  # (cancelled: close gave up on this connection)
                stopped = PoolClosed("the pool stopped this connection")
                self._resolve(ledger.abandon(held, stopped) if sending else ledger.withdraw(held, stopped))
            if client is not None:
                self._keep_trace(client)
                client.close()

    def _broken(self, exc: Exception) -> SMTPError:
        """A connection's loop failed on a bug: no new work is taken, what waits fails with this."""
        error = SMTPError(f"the pool's connection loop failed: {exc!r}")
        self._ledger.fatal = error
        return error

    def _refused_locally(self, client: AsyncSMTPClient, batch: list[Job],
                         error: LocalProtocolError) -> SMTPError | None:
        """``send_many`` refused the batch before queueing it.  On a live connection a message is at fault
        (the ledger finds which); on an ended one, the batch goes elsewhere as for a cut."""
        if client._closed():
            return connection_gone(batch, error)
        self._resolve(self._ledger.refused_locally(batch, error))
        return None

    async def _wait(self, now: float, idle_until: float | None) -> None:
        """Until work comes, the next delayed message is due, or the connection has idled enough."""
        assert self._wakeup is not None
        until = [moment for moment in (self._ledger.next_due(), idle_until) if moment is not None]
        self._wakeup.clear()
        try:
            async with asyncio.timeout(max(min(until) - now, 0.0) if until else None):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    async def _connect(self) -> AsyncSMTPClient:
        wait = self._connect_pace.delay(1, time.monotonic())
        if wait:
            await asyncio.sleep(wait)
        client = AsyncSMTPClient.from_options(self.options)
        self.connections_opened += 1
        return await client.connect()

    async def _retire(self, client: AsyncSMTPClient) -> None:
        """A polite QUIT (max_messages_per_connection reached, or idle)."""
        try:
            await client.quit()
        except SMTPError:
            client.close()
        self._keep_trace(client)

    def _keep_trace(self, client: AsyncSMTPClient) -> None:
        if self.options.session.trace:
            self.traces.append(client.trace)
