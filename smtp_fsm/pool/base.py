"""What both pools share (``PoolBase``): their keywords, checked once, the ledger and the rates, and
what becomes of a client at its end.  Each pool adds only its waits: asyncio's or threads'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..errors import LocalProtocolError, SMTPError
from ..options import ClientOptions
from ..trace import TraceStep
from .ledger import Job, Ledger, RetryPolicy, Sent
from .pace import Pace
from .settings import PoolSettings

if TYPE_CHECKING:
    from .._driver import DriverBase

ClientT = TypeVar("ClientT", bound="DriverBase[Any, Any, Any, Any]")


class PoolBase(Generic[ClientT]):
    """The pool's keywords (see the README's table), then the client's (``SMTPClient``'s or
    ``AsyncSMTPClient``'s): every one is checked here, before any connection."""

    #: The driver class each connection is made of.
    client_class: ClassVar[Any]

    def __init__(self, host: str, port: int | None = None, *, max_connections: int = 4,
                 max_messages_per_connection: int | None = None, idle_timeout: float = 30.0,
                 max_rate: float | None = None, max_connect_rate: float | None = None, max_pending: int = 1000,
                 batch: int = 32, attempts: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 resend_uncertain: bool = False, **client_keywords: Any) -> None:
        retry = RetryPolicy(attempts, backoff, max_backoff, resend_uncertain)
        self.settings = PoolSettings(max_connections, max_messages_per_connection, idle_timeout, max_rate,
                                     max_connect_rate, max_pending, batch, retry)
        #: The connections' settings, checked now (a bad keyword raises here, before any connection).
        self.options: ClientOptions = self.client_class(host, port, **client_keywords).options
        if self.options.session.quit_after is not None:  # (a probe stops before the data)
            raise LocalProtocolError("quit_after has no place in a pool: it sends whole messages")
        self._ledger = Ledger(retry)
        self._pace = Pace(max_rate, "max_rate")
        self._connect_pace = Pace(max_connect_rate, "max_connect_rate")
        self._active: set[ClientT] = set()
        self._closing = False
        #: With ``trace=True``: each closed connection's trace, in the order they closed.
        self.traces: list[list[TraceStep]] = []
        self.connections_opened = 0
        self._init_waits()

    def _init_waits(self) -> None:
        """The pool's own synchronisation (asyncio's or threads')."""
        raise NotImplementedError

    def _new_client(self) -> ClientT:
        client: ClientT = self.client_class.from_options(self.options)
        return client

    def _drop(self, client: ClientT) -> None:
        """Close a client without QUIT (after a cut, or at the end), keeping its trace."""
        self._keep_trace(client)
        client.close()

    def _broken(self, exc: Exception) -> SMTPError:
        """A connection's loop failed on a bug: no new work is taken, what waits fails with this."""
        error = SMTPError(f"the pool's connection loop failed: {exc!r}")
        self._ledger.fatal = error
        return error

    def _deliver(self, job: Job) -> None:
        """A finished message's result to whoever waits for it: its ``send_all``, or its future (unless
        the caller cancelled that)."""
        if job.inbox is not None:
            job.inbox.put(Sent(job.key, job.result))
            return
        future = job.waiter
        if future is not None and not future.done():
            future.set_result(job.result)

    def _winding_down(self) -> bool:
        """Whether a connection waiting with nothing to do should look again now: the pool is closing,
        or a fatal refusal means no message will go (it says QUIT)."""
        return self._closing or self._ledger.fatal is not None

    def _keep_trace(self, client: ClientT) -> None:
        if self.options.session.trace:
            self.traces.append(client.trace)  # (list.append: atomic under the GIL, for the threads too)
