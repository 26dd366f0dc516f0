"""A rate limit as a token bucket, sans-IO: how long to wait before the next ``n`` may go."""

from __future__ import annotations

from ..errors import LocalProtocolError


class Pace:
    """At most ``rate`` per second on average, in bursts of at most ``burst`` (default: one second's
    worth).  ``rate`` None is no limit."""

    def __init__(self, rate: float | None, what: str, burst: float | None = None) -> None:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0):
            raise LocalProtocolError(f"{what} must be a number per second > 0 (or None), not {rate!r}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else float(rate or 1))
        self.tokens = self.burst
        self.stamp: float | None = None

    def delay(self, n: int, now: float) -> float:
        """Take ``n`` tokens; the seconds to wait before using them (0: go now).  A caller that waits
        that long and then goes keeps the average at ``rate``."""
        if self.rate is None:
            return 0.0
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
