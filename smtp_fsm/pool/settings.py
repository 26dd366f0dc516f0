"""The pool's own keywords, checked once; both pools take them as they are."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LocalProtocolError
from .ledger import RetryPolicy


def _positive_int(name: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LocalProtocolError(f"{name} must be a whole number >= 1{' or None' if allow_none else ''}, "
                                 f"not {value!r}")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """``max_connections`` open at most; ``max_messages_per_connection`` (then QUIT and a new one);
    ``idle_timeout`` seconds before an unused connection says QUIT; ``max_rate`` messages and
    ``max_connect_rate`` new connections per second; ``max_pending`` messages submitted and not
    finished (``submit`` waits beyond it: backpressure); ``batch`` messages per ``send_many``."""

    max_connections: int = 4
    max_messages_per_connection: int | None = None
    idle_timeout: float = 30.0
    max_rate: float | None = None
    max_connect_rate: float | None = None
    max_pending: int = 1000
    batch: int = 32
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        _positive_int("max_connections", self.max_connections)
        _positive_int("max_messages_per_connection", self.max_messages_per_connection, allow_none=True)
        _positive_int("max_pending", self.max_pending)
        _positive_int("batch", self.batch)
        idle = self.idle_timeout
        if isinstance(idle, bool) or not isinstance(idle, int | float) or not idle > 0:
            raise LocalProtocolError(f"idle_timeout must be a number of seconds > 0, not {idle!r}")

    def batch_for(self, sent_on_connection: int) -> int:
        """How many messages the next ``send_many`` on a connection may take: ``batch``, but no more
        than half ``max_pending`` spread over the connections -- so that while each connection sends
        a batch, another batch each waits ready, and a connection that finishes takes its next at
        once instead of idling until the caller submits more (``max_connections`` x ``batch`` over
        ``max_pending`` cost a third of the throughput: bench/README.md)."""
        size = min(self.batch, max(1, self.max_pending // (2 * self.max_connections)))
        limit = self.max_messages_per_connection
        return size if limit is None else max(0, min(size, limit - sent_on_connection))
