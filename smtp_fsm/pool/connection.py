"""One pooled connection's decisions, sans-IO: what to do next, and what each outcome means.

Both pools run the same loop around a ``Connection``: ask ``next_step``, do what it says (wait,
connect, send, QUIT) with their own waits, and report back (``opened``, ``open_failed``,
``sending``, ``sent``, ``refused_locally``; ``broken`` and ``ended`` when the loop fails or stops).
Every report returns the messages it finished, for the pool to resolve outside any lock; what
becomes of each message is the ledger's decision.  (The blocking pool calls these with its lock
held, the asyncio pool between awaits: either way one caller at a time.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._driver import Batch
from ..errors import LocalProtocolError, PoolClosed, SMTPError
from ..results import SendResult
from .ledger import Job

if TYPE_CHECKING:
    from .._driver import DriverBase
    from .base import PoolBase

ClientT = TypeVar("ClientT", bound="DriverBase[Any, Any, Any, Any]")


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to send: wait to be woken, or until ``until`` (``time.monotonic()``; None: no limit)."""

    until: float | None


@dataclass(frozen=True, slots=True)
class Quit:
    """Say QUIT on ``client`` (idle long enough, its quota sent, or the pool closing)."""

    client: Any


@dataclass(frozen=True, slots=True)
class Open:
    """Connect, after ``delay`` seconds (the connect rate)."""

    delay: float


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``batch`` on ``client`` (``send_many``) after ``delay`` seconds (the message rate); first
    ask ``sending()`` whether the pool still wants it sent."""

    client: Any
    batch: Batch  # the items, with their submissions checked when they were submitted
    delay: float


Step = Idle | Quit | Open | Send


def connection_gone(batch: Sequence[Job], cause: SMTPError) -> SMTPError:
    """The error for a batch that found its connection ended before anything was queued: each message
    unsent (so the ledger moves it to another connection)."""
    error = SMTPError(f"the connection ended before the batch was queued: {cause}")
    error.unsent = tuple(job.item for job in batch)
    return error


class Connection(Generic[ClientT]):
    """The state of one pooled connection: its client, what it sent, the batch it holds."""

    def __init__(self, pool: PoolBase[ClientT]) -> None:
        self.pool = pool
        self.client: ClientT | None = None
        self.messages = 0  # messages sent on this client
        self.last_used = 0.0
        self.failures = 0  # connects refused in a row
        self.held: list[Job] = []  # the batch taken and not settled
        self.in_flight = False  # ... and handed to send_many

    def next_step(self, now: float) -> Step | None:
        """What to do now (None: this connection's loop ends)."""
        pool = self.pool
        ledger, settings = pool._ledger, pool.settings
        batch = ledger.take(now, settings.batch_for(self.messages)) if ledger.fatal is None else []
        if not batch:
            client = self.client
            if client is not None and self._retire_now(now):
                self.client, self.messages = None, 0
                return Quit(client)
            if pool._closing and ledger.outstanding == 0:
                return None
            due = [moment for moment in (ledger.next_due(),
                                         None if client is None else self.last_used + settings.idle_timeout)
                   if moment is not None]
            return Idle(min(due) if due else None)
        self.held = batch
        if self.client is None:
            pool.connections_opened += 1
            return Open(pool._connect_pace.delay(1, now))
        return self._send(self.client, now)

    def _retire_now(self, now: float) -> bool:
        """With nothing to send: whether the client says QUIT now (its quota sent, idle long enough, no
        connection to be made any more, or the pool closing with nothing left)."""
        pool = self.pool
        ledger, settings = pool._ledger, pool.settings
        return bool((self.messages and not settings.batch_for(self.messages))
                    or now - self.last_used >= settings.idle_timeout
                    or ledger.fatal is not None or (pool._closing and ledger.outstanding == 0))

    def opened(self, client: ClientT, now: float) -> Send:
        self.client, self.messages, self.failures, self.last_used = client, 0, 0, now
        return self._send(client, now)

    def _send(self, client: ClientT, now: float) -> Send:
        held = self.held
        batch = Batch([job.item for job in held], prepared=[job.submission for job in held])
        return Send(client, batch, self.pool._pace.delay(len(held), now))

    def open_failed(self, error: SMTPError, now: float) -> tuple[list[Job], float]:
        """The connect failed: the batch goes back (or fails, if nothing will do better); the seconds to
        pause before this connection tries again."""
        finished = self.pool._ledger.connect_failed(self.held, error, now)
        self.held = []
        self.failures += 1
        return finished, self.pool.settings.retry.delay(self.failures + 1, self.pool._ledger.rng)

    def sending(self) -> list[Job] | None:
        """The batch is about to go; the pool closed past its deadline meanwhile: withdrawn instead."""
        ledger = self.pool._ledger
        if ledger.stopped is not None:
            withdrawn = ledger.withdraw(self.held, ledger.stopped)
            self.held = []
            return withdrawn
        assert self.client is not None
        self.in_flight = True
        self.pool._active.add(self.client)  # (close past its deadline interrupts it)
        return None

    def sent(self, results: list[SendResult] | None, cut: SMTPError | None,
             now: float) -> tuple[list[Job], ClientT | None]:
        """``send_many`` returned ``results``, or was cut short by ``cut``: the messages finished, and
        after a cut the client, no longer this connection's (the pool closes it)."""
        client = self.client
        if client is not None:
            self.pool._active.discard(client)
        finished = self.pool._ledger.settle(self.held, results, cut, now)
        self.messages += len(self.held)
        self.held, self.in_flight, self.last_used = [], False, now
        if cut is None:
            return finished, None
        self.client, self.messages = None, 0
        return finished, client

    def refused_locally(self, error: LocalProtocolError) -> tuple[list[Job], SMTPError | None]:
        """``send_many`` refused the batch before queueing it.  On a live client a message is at fault
        (the ledger finds which); on an ended one the batch moves on as for a cut (returned: report it
        with ``sent``)."""
        client = self.client
        assert client is not None
        if client._closed():
            return [], connection_gone(self.held, error)
        self.pool._active.discard(client)
        finished = self.pool._ledger.refused_locally(self.held, error)
        self.held, self.in_flight = [], False
        return finished, None

    def broken(self, exc: Exception) -> list[Job]:
        """This loop failed on a bug: its batch and everything waiting fail (the pool takes no more)."""
        error = self.pool._broken(exc)
        ledger = self.pool._ledger
        finished = ledger.abandon(self.held, error) + ledger.fail_all(error)
        self.held = []
        return finished

    def ended(self) -> list[Job]:
        """The loop ends (cancelled by a close that gave up on it): the batch it held ends too."""
        held, self.held = self.held, []
        if not held:
            return []
        stopped = PoolClosed("the pool stopped this connection")
        ledger = self.pool._ledger
        return ledger.abandon(held, stopped) if self.in_flight else ledger.withdraw(held, stopped)
