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

from ..errors import LocalProtocolError, PoolClosed, SMTPError
from ..results import SendResult
from ..session import MessageItem
from ..sync import SMTPClient
from .base import PoolBase
from .connection import Connection, Idle, Open, Quit
from .ledger import Job, Sent, job_for


class SMTPPool(PoolBase[SMTPClient]):
    """Connections to one server on threads: ``pool.submit(item)`` gives a ``concurrent.futures.Future``
    of its ``SendResult``; ``for sent in pool.send_all(items)`` yields ``Sent(key, result)`` as
    messages finish.  The keywords after the pool's own are ``SMTPClient``'s."""

    client_class = SMTPClient

    def _init_waits(self) -> None:
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._room = threading.Semaphore(self.settings.max_pending)
        self._drained = threading.Event()
        self._drained.set()
        self._threads: list[threading.Thread] = []

    # -- the caller's side ---------------------------------------------------------------

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, item: MessageItem, *, key: Hashable = None) -> Future[SendResult]:
        """Queue one message (a ``send_many`` item); blocks while ``max_pending`` are unfinished.  A bad
        item raises ``LocalProtocolError`` at once."""
        job = job_for(item, key)
        future: Future[SendResult] = Future()
        job.waiter = future
        self._submit(job)
        return future

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
            job = job_for(item, key(item) if key is not None else index)
            job.inbox = done
            self._submit(job)
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

    def _submit(self, job: Job) -> None:
        if self._closing:
            raise PoolClosed("the pool is closed")
        self._room.acquire()
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
                if self._winding_down():
                    self._wakeup.notify_all()
        for job in finished:
            self._deliver(job)

    def _connection(self) -> None:
        """One connection's life, again and again (the decisions are ``Connection``'s, taken under the
        lock; the waits, connects and sends happen outside it)."""
        connection = Connection(self)
        lock = self._lock
        try:
            while True:
                with lock:
                    step = connection.next_step(time.monotonic())
                    if step is None:
                        return
                    if isinstance(step, Idle):
                        self._wakeup.wait(None if step.until is None else max(step.until - time.monotonic(), 0.0))
                        continue
                    if not self._ledger.idle():
                        # More than this connection took, or a retry it may have been waiting to
                        # send when the wake-up came: the next waiting connection takes it (or its time).
                        self._wakeup.notify()
                if isinstance(step, Quit):
                    self._retire(step.client)
                    continue
                if isinstance(step, Open):
                    time.sleep(step.delay)
                    try:
                        client = self._new_client().connect()
                    except SMTPError as refused:
                        with lock:
                            finished, pause = connection.open_failed(refused, time.monotonic())
                        self._resolve(finished)
                        time.sleep(pause)
                        continue
                    with lock:
                        step = connection.opened(client, time.monotonic())
                if step.delay:
                    time.sleep(step.delay)
                with lock:
                    withdrawn = connection.sending()
                if withdrawn is not None:
                    self._resolve(withdrawn)
                    continue
                results: list[SendResult] | None = None
                cut: SMTPError | None = None
                try:
                    results = step.client._send_many(step.batch)
                except LocalProtocolError as refused:  # (nothing was queued)
                    with lock:
                        finished, cut = connection.refused_locally(refused)
                    if cut is None:
                        self._resolve(finished)
                        continue
                except SMTPError as exc:
                    cut = exc
                with lock:
                    finished, dropped = connection.sent(results, cut, time.monotonic())
                self._resolve(finished)
                if dropped is not None:
                    self._drop(dropped)
        except Exception as exc:  # a bug: fail loudly, never leave a caller waiting
            with lock:
                finished = connection.broken(exc)
            self._resolve(finished)
            raise
        finally:
            with lock:
                ended = connection.ended()  # (a thread only leaves mid-batch on a bug; for safety)
            self._resolve(ended)
            if connection.client is not None:
                self._drop(connection.client)

    def _retire(self, client: SMTPClient) -> None:
        """A polite QUIT (max_messages_per_connection reached, idle, or closing)."""
        try:
            client.quit()
        except SMTPError:
            client.close()
        self._keep_trace(client)
