"""Sending mail from a task queue: Dramatiq workers on Redis, one ``SMTPPool`` per worker process.

Run the workers with Dramatiq's own command (N processes, each with its threads and one pool), and
queue messages from anywhere with ``send_mail.send(...)``::

    SMTP_FSM_REDIS=redis://127.0.0.1:6379/0 SMTP_FSM_SMTP=127.0.0.1:2525 \\
        dramatiq queue_worker --path examples --processes 4 --threads 8

The queue, not this file, keeps messages across crashes: Dramatiq's Redis broker acknowledges a
message only when its actor returns, and hands the unacknowledged messages of a worker that stopped
beating its heart to another worker.  Here the actor returns only after the message's final result,
so a worker that dies mid-send leaves its messages to be delivered again by the queue.  What keeps
them from being *sent* twice is a marker written before the message goes to the pool: a redelivered
message whose marker is there may have reached the server (its worker died between the marker and
the result), so it is recorded ``uncertain`` and not sent again.  (A message whose worker died
before its content left is then ``uncertain`` too: the marker cannot tell, and a duplicate is the
worse mistake.)  Each message's result is kept in Redis under its key.
"""

from __future__ import annotations

import atexit
import json
import os
import threading

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from smtp_fsm import Outcome, SendResult, SMTPPool

REDIS_URL = os.environ.get("SMTP_FSM_REDIS", "redis://127.0.0.1:6379/0")
SMTP_HOST, _, SMTP_PORT = os.environ.get("SMTP_FSM_SMTP", "127.0.0.1:25").rpartition(":")
#: Milliseconds without a heartbeat after which a worker's unacknowledged messages go to another.
HEARTBEAT_TIMEOUT = int(os.environ.get("SMTP_FSM_HEARTBEAT_MS", "60000"))
#: Redis keys: the result of a finished message, and the marker of one handed to a pool.
RESULT, MARKER = "smtp-fsm:result:", "smtp-fsm:sending:"

broker = RedisBroker(url=REDIS_URL, heartbeat_timeout=HEARTBEAT_TIMEOUT,  # type: ignore[no-untyped-call]
                     # (the check for dead workers' messages runs on every Nth command: every one here,
                     # so that a test sees the redelivery within the heartbeat timeout)
                     maintenance_chance=int(os.environ.get("SMTP_FSM_MAINTENANCE_CHANCE", "1000")))
dramatiq.set_broker(broker)
store = redis.Redis.from_url(REDIS_URL)

_pool: SMTPPool | None = None
_pool_lock = threading.Lock()


def pool() -> SMTPPool:
    """This process's pool, made on first use (after Dramatiq forked the worker process)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SMTPPool(SMTP_HOST, int(SMTP_PORT), max_connections=2, local_hostname="worker.example")
            atexit.register(_pool.close)
        return _pool


def record(key: str, outcome: str, result: SendResult | None = None) -> None:
    summary: dict[str, object] = {"outcome": str(outcome)}
    if result is not None:
        summary |= {"accepted": list(result.accepted), "refused": list(result.refused),
                    "error": str(result.error) if result.error else None}
    store.set(RESULT + key, json.dumps(summary))


@dramatiq.actor(queue_name="mail", max_retries=0)
def send_mail(key: str, sender: str, recipients: list[str], content: str) -> None:
    """Send one message, at most once; its result lands under ``smtp-fsm:result:<key>``."""
    if store.exists(RESULT + key):
        return  # finished before; only the acknowledgement was lost
    if not store.set(MARKER + key, os.getpid(), nx=True):
        record(key, Outcome.UNCERTAIN)  # a worker took it, and died before its result
        return
    result = pool().submit((sender, recipients, content.encode())).result()
    record(key, result.outcome, result)


def results(keys: list[str]) -> dict[str, dict[str, object]]:
    """The results recorded so far, by key (for the caller that queued them)."""
    values = store.mget([RESULT + key for key in keys]) if keys else []
    return {key: json.loads(value) for key, value in zip(keys, values, strict=True) if value is not None}
