"""``SMTPPool``: the blocking pool, one thread per connection, each an ``SMTPClient``.

The same loop as ``AsyncSMTPPool`` with threads' waits: one lock guards the ledger, a condition
wakes the connections, a semaphore bounds what is submitted and not finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any

from ..errors import LocalProtocolError, PoolClosed, SMTPError
from ..results import SendResult
from ..session import MessageItem
from ..sync import SMTPClient
from ..trace import TraceStep
from .ledger import Job, Ledger, RetryPolicy, Sent, connection_gone, job_for, refuse_probes
from .pace import Pace
from .settings import PoolSettings


class SMTPPool:
    """Connections to one server on threads: ``pool.submit(item)`` gives a ``concurrent.futures.Future``
    of its ``SendResult``; ``for sent in pool.send_all(items)`` yields ``Sent(key, result)`` as
    messages finish.  The keywords after the pool's own are ``SMTPClient``'s."""

    def __init__(self, host: str, port: int | None = None, *, max_connections: int = 4,
                 max_messages_per_connection: int | None = None, idle_timeout: float = 30.0,
                 max_rate: float | None = None, max_connect_rate: float | None = None, max_pending: int = 1000,
                 batch: int = 32, attempts: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 resend_uncertain: bool = False, **client_keywords: Any) -> None:
        retry = RetryPolicy(attempts, backoff, max_backoff, resend_uncertain)
        self.settings = PoolSettings(max_connections, max_messages_per_connection, idle_timeout, max_rate,
                                     max_connect_rate, max_pending, batch, retry)
        #: The connections' settings, checked now (a bad keyword raises here, before any connection).
        self.options = SMTPClient(host, port, **client_keywords).options
        refuse_probes(self.options)
        self._ledger = Ledger(retry)
        self._pace = Pace(max_rate, "max_rate")
        self._connect_pace = Pace(max_connect_rate, "max_connect_rate")
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._room = threading.Semaphore(self.settings.max_pending)
        self._drained = threading.Event()
        self._drained.set()
        self._threads: list[threading.Thread] = []
        self._active: set[SMTPClient] = set()
        self._closing = False
        #: With ``trace=True``: each closed connection's trace, in the order they closed.
        self.traces: list[list[TraceStep]] = []
        self.connections_opened = 0

    # -- the caller's side ---------------------------------------------------------------

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, item: MessageItem, *, key: Hashable = None) -> Future[SendResult]:
        """Queue one message (a ``send_many`` item); blocks while ``max_pending`` are unfinished.  A bad
        item raises ``LocalProtocolError`` at once."""
        return self._submit(job_for(item, key))

    def send_all(self, items: Iterable[MessageItem], *,
                 key: Callable[[MessageItem], Hashable] | None = None) -> Iterator[Sent]:
        """Send every item, yielding ``Sent(key, result)`` as each finishes (``key``: the item's index
        unless a function gives one).  At most ``max_pending`` items are read ahead of the results."""
        done: SimpleQueue[Sent] = SimpleQueue()
        outstanding = 0
        limit = self.settings.max_pending
        for index, item in enumerate(items):
            while outstanding >= limit:  # results not yet taken count too: memory stays bounded
                outstanding -= 1
                yield done.get()
            job_key = key(item) if key is not None else index
            future = self._submit(job_for(item, job_key))
            future.add_done_callback(lambda f, k=job_key: done.put(Sent(k, f.result())))  # type: ignore[misc]
            outstanding += 1
            while not done.empty():
                outstanding -= 1
                yield done.get()
        while outstanding:
            outstanding -= 1
            yield done.get()

    def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` seconds for every submitted message, then stop what is left: a message
        whose content never left is ``not_sent``, one whose content left is ``uncertain``."""
        with self._lock:
            self._closing = True
            self._wakeup.notify_all()
        if not self._drained.wait(timeout):
            error = PoolClosed(f"the pool was closed with messages unfinished after {timeout} s")
            with self._lock:
                finished = self._ledger.stop(error)
                active = list(self._active)
                self._wakeup.notify_all()
            self._resolve(finished)
            for client in active:
                client._interrupt()
        with self._lock:
            self._wakeup.notify_all()
        deadline = time.monotonic() + max(timeout, 1.0)  # (one deadline for all: each join takes its rest)
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    # -- the connections ---------------------------------------------------------------

    def _submit(self, job: Job) -> Future[SendResult]:
        if self._closing:
            raise PoolClosed("the pool is closed")
        self._room.acquire()
        future: Future[SendResult] = Future()
        job.waiter = future
        with self._lock:
            if self._closing:  # (closed while this waited for room: the connections may be gone)
                self._room.release()
                raise PoolClosed("the pool is closed")
            self._start()
            self._drained.clear()
            ledger = self._ledger
            ledger.add(job)
            failed = ledger.fail_all(ledger.fatal) if ledger.fatal is not None else []
            self._wakeup.notify()
        self._resolve(failed)
        return future

    def _start(self) -> None:
        if self._threads:
            return
        for number in range(self.settings.max_connections):
            thread = threading.Thread(target=self._connection, name=f"smtp-pool-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _resolve(self, finished: list[Job]) -> None:
        if not finished:
            return
        with self._lock:  # (before the results: a callback may submit, and must find room)
            for _ in finished:
                self._room.release()
            if self._ledger.outstanding == 0:
                self._drained.set()
                self._wakeup.notify_all()  # (connections waiting with nothing to do: closing, they may go)
        for job in finished:
            future = job.waiter
            if future is not None and not future.done():
                future.set_result(job.result)

    def _connection(self) -> None:
        """One connection's life, again and again: wait for work, connect, send, retire when idle."""
        ledger, settings = self._ledger, self.settings
        client: SMTPClient | None = None
        sent = 0
        last_used = time.monotonic()
        failures = 0
        held: list[Job] = []  # a batch taken and not settled: withdrawn, or abandoned once sending
        sending = False
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    batch = ledger.take(now, settings.batch_for(sent)) if ledger.fatal is None else []
                    if not batch:
                        retire = client is not None and ((sent and not settings.batch_for(sent))
                                                         or now - last_used >= settings.idle_timeout
                                                         or ledger.fatal is not None
                                                         or (self._closing and ledger.outstanding == 0))
                        if not retire:
                            if self._closing and ledger.outstanding == 0:
                                return
                            self._wait(now, None if client is None else last_used + settings.idle_timeout)
                            continue
                    held = batch
                if not batch:
                    assert client is not None
                    self._retire(client)
                    client, sent = None, 0
                    continue
                if client is None:
                    try:
                        client = self._connect()
                    except SMTPError as refused:
                        with self._lock:
                            held = []
                            finished = ledger.connect_failed(batch, refused, time.monotonic())
                        self._resolve(finished)
                        failures += 1
                        time.sleep(settings.retry.delay(failures + 1, ledger.rng))
                        continue
                    failures, sent = 0, 0
                with self._lock:
                    wait = self._pace.delay(len(batch), time.monotonic())
                if wait:
                    time.sleep(wait)
                with self._lock:
                    stopped = ledger.stopped
                    if stopped is not None:  # (closed past its deadline while this connected)
                        held = []
                        finished = ledger.withdraw(batch, stopped)
                    else:
                        self._active.add(client)
                        sending = True
                if stopped is not None:
                    self._resolve(finished)
                    continue
                results: list[SendResult] | None = None
                cut: SMTPError | None = None
                try:
                    results = client.send_many([job.item for job in batch])
                except LocalProtocolError as refused:  # (nothing was queued)
                    cut = self._refused_locally(client, batch, refused)
                    if cut is None:
                        held, sending = [], False
                        continue
                except SMTPError as exc:
                    cut = exc
                with self._lock:
                    self._active.discard(client)
                    finished = ledger.settle(batch, results, cut, time.monotonic())
                    held, sending = [], False
                self._resolve(finished)
                sent += len(batch)
                last_used = time.monotonic()
                if cut is not None:
                    self._keep_trace(client)
                    client.close()
                    client, sent = None, 0
        except Exception as exc:  # a bug: fail loudly, never leave a caller waiting
            with self._lock:
                broken = self._broken(exc)
                failed = ledger.abandon(held, broken) + ledger.fail_all(broken)
            held = []
            self._resolve(failed)
            raise
        finally:
            if held:  # (a thread only leaves mid-batch on a bug, handled above; kept for safety)
                stopped_here = PoolClosed("the pool stopped this connection")
                with self._lock:
                    ended = ledger.abandon(held, stopped_here) if sending else ledger.withdraw(held, stopped_here)
                self._resolve(ended)
            if client is not None:
                self._keep_trace(client)
                client.close()

    def _broken(self, exc: Exception) -> SMTPError:
        """A connection's loop failed on a bug: no new work is taken, what waits fails with this."""
        error = SMTPError(f"the pool's connection loop failed: {exc!r}")
        self._ledger.fatal = error
        return error

    def _refused_locally(self, client: SMTPClient, batch: list[Job], error: LocalProtocolError) -> SMTPError | None:
        """``send_many`` refused the batch before queueing it.  On a live connection a message is at fault
        (the ledger finds which); on an ended one, the batch goes elsewhere as for a cut."""
        if client._closed():
            return connection_gone(batch, error)
        with self._lock:
            self._active.discard(client)
            finished = self._ledger.refused_locally(batch, error)
        self._resolve(finished)
        return None

    def _wait(self, now: float, idle_until: float | None) -> None:
        """(With the lock held.)  Until work comes, the next delayed message is due, or the connection
        has idled enough."""
        until = [moment for moment in (self._ledger.next_due(), idle_until) if moment is not None]
        self._wakeup.wait(max(min(until) - now, 0.0) if until else None)

    def _connect(self) -> SMTPClient:
        with self._lock:
            wait = self._connect_pace.delay(1, time.monotonic())
            self.connections_opened += 1
        if wait:
            time.sleep(wait)
        return SMTPClient.from_options(self.options).connect()

    def _retire(self, client: SMTPClient) -> None:
        """A polite QUIT (max_messages_per_connection reached, idle, or closing)."""
        try:
            client.quit()
        except SMTPError:
            client.close()
        self._keep_trace(client)

    def _keep_trace(self, client: SMTPClient) -> None:
        if self.options.session.trace:
            with self._lock:
                self.traces.append(client.trace)
