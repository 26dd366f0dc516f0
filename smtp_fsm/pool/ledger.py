"""The pool's bookkeeping, sans-IO: which messages wait, which go again and when, and what each came to.

The two pools (``AsyncSMTPPool``, ``SMTPPool``) are thin loops around one ``Ledger``: a connection
takes a batch (``take``), sends it with ``send_many`` and hands back what became of each message
(``settle``), or says it could not connect (``connect_failed``).  The ledger decides, per message:

* delivered recipients are done, never sent to again;
* a recipient whose last reply was 4xx (at MAIL, RCPT or the end of the data) goes again after a
  backoff, alone with the others so answered: bounded exponential, with jitter;
* a message none of whose content left (its connection died first) goes again at once the first
  time, on whichever connection takes it next, after a backoff from then on (and after a refused
  connect);
* a message whose content left without a final reply is ``uncertain`` and final, unless the
  caller opted into resending those;
* 5xx is final at once; every sending (a reroute too) counts against ``attempts``.

An authentication failure (or any refusal of the connection itself that waiting cannot mend) is
``fatal``: the messages still waiting fail with it, and no connection is made again.
"""

from __future__ import annotations

import heapq
import random
import ssl
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..errors import (
    AuthenticationError,
    LocalProtocolError,
    SenderRefused,
    SMTPError,
    SMTPReplyError,
    SMTPTimeout,
    TLSError,
    TLSUnavailable,
)
from ..replies import Reply
from ..results import Outcome, SendResult
from ..session import MessageItem, item_submission
from ..transaction import Submission

__all__ = ["Inbox", "Job", "Ledger", "RetryPolicy", "Sent"]


@dataclass(frozen=True, slots=True)
class Sent:
    """A finished message: the key it was submitted with (``send_all``: its index) and its result."""

    key: Hashable
    result: SendResult


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a message goes again (see the module's docstring)."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    resend_uncertain: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise LocalProtocolError(f"attempts must be a whole number >= 1, not {self.attempts!r}")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise LocalProtocolError(f"{name} must be a number of seconds >= 0, not {value!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before sending ``attempt`` (2 or more): doubling from ``backoff``, capped, and
        between half and all of that (jitter, so that messages refused together do not come back
        together)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** max(attempt - 2, 0))
        return ceiling * (0.5 + rng.random() / 2)


class Inbox(Protocol):
    """Where ``send_all`` collects its finished messages (one for the whole call, not a future each)."""

    def put(self, sent: Sent) -> None: ...


class Job:
    """One submitted message and what it came to so far."""

    __slots__ = ("alone", "attempts", "done", "inbox", "item", "key", "merged", "recipients", "submission", "waiter")

    def __init__(self, key: Hashable, submission: Submission) -> None:
        self.key = key
        #: Checked once, when submitted; aimed again at what a retry sends to.
        self.submission = submission
        self.recipients = submission.recipients  # as submitted: the result's
        #: What the driver hands back in ``unsent`` and ``uncertain`` (matched by identity).
        self.item: MessageItem = (submission.sender, submission.recipients, submission.source)
        self.merged: SendResult | None = None  # made when a sending needs merging (most never do)
        self.attempts = 0  # sendings so far (a reroute counts)
        self.done = False
        self.alone = False  # goes in a batch of its own (a batch it was in was refused locally)
        self.waiter: Any = None  # the pool's future for this message (``submit``) ...
        self.inbox: Inbox | None = None  # ... or the ``send_all`` it came from

    @property
    def result(self) -> SendResult:
        """What the message came to, merged over its sendings; final once ``done``."""
        merged = self.merged
        if merged is None:
            merged = self.merged = SendResult(self.submission.sender, self.recipients)
        return merged

    @property
    def sender(self) -> str:
        return self.submission.sender

    @property
    def pending(self) -> tuple[str, ...]:
        """The recipients the next sending goes to."""
        return self.submission.recipients

    def aim(self, recipients: tuple[str, ...]) -> None:
        submission = self.submission = replace(self.submission, recipients=recipients)
        self.item = (submission.sender, recipients, submission.source)


def job_for(item: MessageItem, key: Hashable) -> Job:
    """A job for a ``send_many`` item, checked now (a bad address raises here, before anything is queued)."""
    return Job(key, item_submission(item))


def fatal(error: SMTPError) -> bool:
    """Whether a failed connect means no connection will do better: credentials refused for good
    (535, 534, 538: not a 454), a certificate refused, STARTTLS required and not offered, a 5xx
    greeting, a setting the server rules out.  A timeout or a handshake cut is worth another try."""
    if isinstance(error, SMTPTimeout):
        return False
    if isinstance(error, TLSError):
        return isinstance(error.__cause__, ssl.SSLCertVerificationError)
    if isinstance(error, TLSUnavailable | LocalProtocolError):
        return True
    if isinstance(error, AuthenticationError):  # (no usable mechanism carries EHLO's 250: fatal too)
        return not error.reply.is_transient
    return isinstance(error, SMTPReplyError) and error.reply.is_permanent


class Ledger:
    """The messages of one pool: waiting (``ready``), waiting for their time (``delayed``), or out."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.ready: deque[Job] = deque()
        self.delayed: list[tuple[float, int, Job]] = []  # a heap by due time
        self._order = 0
        self.outstanding = 0  # submitted and not finished
        self.fatal: SMTPError | None = None
        #: Set when the pool closes past its deadline: nothing goes again, what ends says this.
        self.stopped: SMTPError | None = None

    # -- in -----------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        self.outstanding += 1
        self.ready.append(job)

    def take(self, now: float, limit: int) -> list[Job]:
        """Up to ``limit`` messages to send now, those whose time has come first."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            self.ready.appendleft(heapq.heappop(delayed)[2])  # (they waited longest)
        batch: list[Job] = []
        ready = self.ready
        while ready and len(batch) < limit and not (batch and ready[0].alone):
            job = ready.popleft()
            job.attempts += 1
            batch.append(job)
            if job.alone:
                break
        return batch

    def next_due(self) -> float | None:
        """When the first delayed message may go (None: none waits), for a pool with nothing ready."""
        return self.delayed[0][0] if self.delayed else None

    def idle(self) -> bool:
        return not self.ready and not self.delayed

    # -- out ----------------------------------------------------------------------------

    def settle(self, batch: Sequence[Job], results: Sequence[SendResult] | None, error: SMTPError | None,
               now: float) -> list[Job]:
        """What ``send_many(batch)`` came to: its results, or the error that cut it short (with each
        message's fate); returns the jobs that are finished (their ``result`` final)."""
        if results is None:
            assert error is not None
            results = fates(batch, error)
        finished: list[Job] = []
        for job, result in zip(batch, results, strict=True):
            if self._record(job, result, now):
                finished.append(job)
        return finished

    def connect_failed(self, batch: Sequence[Job], error: SMTPError, now: float) -> list[Job]:
        """No connection for ``batch``: nothing of it left.  A fatal error fails everything waiting."""
        if fatal(error):
            self.fatal = error
            return self.fail_all(error, batch)
        finished = []
        for job in batch:
            not_sent = SendResult(job.sender, job.pending, error=error, outcome=Outcome.NOT_SENT)
            if self._record(job, not_sent, now, reroute=False):
                finished.append(job)
        return finished

    def refused_locally(self, batch: Sequence[Job], error: LocalProtocolError) -> list[Job]:
        """``send_many`` refused the batch before anything was queued (a message the server's
        capabilities rule out: over its SIZE, 8-bit without 8BITMIME, ...).  Alone, that message ends
        ``not_sent`` with the error; in a batch, each goes again alone to find which (nothing was sent,
        so it costs no attempt)."""
        ending = self.stopped or self.fatal
        if len(batch) == 1 or ending is not None:  # (no connection will take them again)
            for job in batch:
                self._finish(job, error if len(batch) == 1 else ending, uncertain=())
            return list(batch)
        for job in reversed(batch):
            job.attempts -= 1
            job.alone = True
            self.ready.appendleft(job)
        return []

    def withdraw(self, batch: Sequence[Job], error: SMTPError) -> list[Job]:
        """A batch taken and not handed to ``send_many`` (the pool stopped during its connect):
        nothing of it left, each message ends ``not_sent``."""
        unfinished = [job for job in batch if not job.done]
        for job in unfinished:
            self._finish(job, error, uncertain=())
        return unfinished

    def abandon(self, batch: Sequence[Job], error: SMTPError) -> list[Job]:
        """A sending that never reported back (its connection's task was cancelled, or failed on a bug):
        each message ends ``uncertain``, the reading that never sends it twice."""
        unfinished = [job for job in batch if not job.done]
        for job in unfinished:
            self._finish(job, error, uncertain=job.pending)
        return unfinished

    def stop(self, error: SMTPError) -> list[Job]:
        """Closing past the deadline: what waits ends now, what is in flight ends with its sending."""
        self.stopped = error
        return self.fail_all(error)

    def fail_all(self, error: SMTPError, batch: Sequence[Job] = ()) -> list[Job]:
        """Every message waiting (and ``batch``) ends now with ``error``, with what it had so far."""
        jobs = [job for job in (*batch, *self.ready, *(entry[2] for entry in self.delayed)) if not job.done]
        self.ready.clear()
        self.delayed.clear()
        for job in jobs:
            self._finish(job, error, uncertain=())
        return jobs

    # -- one message ----------------------------------------------------------------------

    def _record(self, job: Job, result: SendResult, now: float, reroute: bool = True) -> bool:
        """Merge one sending's result into the job; schedule what goes again.  True when finished.
        A message none of whose content left goes again at once the first time (``reroute``: its
        connection died under it, another takes it), after a backoff from then on."""
        if (job.attempts == 1 and result.outcome is Outcome.DELIVERED and result.error is None
                and not result.refused and not result.unfinished and not job.done):
            job.merged = result  # (delivered to every recipient at the first go: nothing to merge)
            job.done = True
            self.outstanding -= 1
            return True
        merged = merged_result(job, result)
        again, uncertain = _transient(job.pending, result), _uncertain(job.pending, result)
        retry = again + uncertain if self.policy.resend_uncertain else again
        if result.reply is not None and result.outcome is Outcome.DELIVERED:
            merged.reply = result.reply
        last_error = result.error if self.stopped is None else self.stopped
        if retry and job.attempts < self.policy.attempts and self.stopped is None and self.fatal is None:
            job.aim(retry)
            if reroute and job.attempts == 1 and result.outcome is Outcome.NOT_SENT and not result.refused:
                self.ready.append(job)  # nothing left: on the next connection, at once
            else:
                self._order += 1
                heapq.heappush(self.delayed, (now + self.policy.delay(job.attempts + 1, self.rng), self._order, job))
            if uncertain:
                merged.unfinished.update(dict.fromkeys(uncertain, Outcome.UNCERTAIN))
            return False
        for rcpt in again:  # out of attempts: what they had last is what they get
            if rcpt not in merged.refused:
                merged.unfinished[rcpt] = Outcome.NOT_SENT
        self._finish(job, last_error, uncertain)
        return True

    def _finish(self, job: Job, error: SMTPError | None, uncertain: Sequence[str]) -> None:
        if job.done:
            return  # (once)
        merged = job.result
        for rcpt in uncertain:
            merged.unfinished[rcpt] = Outcome.UNCERTAIN
            merged.refused.pop(rcpt, None)  # (an earlier attempt's 4xx is not its last word)
        for rcpt in job.pending:
            if rcpt not in merged.accepted and rcpt not in merged.refused and rcpt not in merged.unfinished:
                merged.unfinished[rcpt] = Outcome.NOT_SENT
        if merged.accepted:
            merged.outcome = Outcome.DELIVERED
            for rcpt in merged.accepted:
                merged.unfinished.pop(rcpt, None)
        elif Outcome.UNCERTAIN in merged.unfinished.values():
            merged.outcome = Outcome.UNCERTAIN
        elif merged.refused and all(rcpt in merged.refused for rcpt in merged.recipients):
            merged.outcome = Outcome.REFUSED
        else:
            merged.outcome = Outcome.NOT_SENT
        if merged.outcome is not Outcome.DELIVERED:
            merged.unfinished.clear()  # (``unfinished`` is for messages delivered to others first)
        if merged.outcome is not Outcome.DELIVERED or merged.unfinished:
            merged.error = error if error is not None else merged.error
        else:
            merged.error = None  # (delivered to everyone it could be: an earlier attempt's error is moot)
        job.done = True
        self.outstanding -= 1


def merged_result(job: Job, result: SendResult) -> SendResult:
    """Fold one sending into the job's result: delivered recipients stay delivered; the others carry
    their latest reply."""
    merged = job.result
    if result.outcome is Outcome.DELIVERED:
        for rcpt, reply in result.accepted.items():
            merged.accepted[rcpt] = reply
            merged.refused.pop(rcpt, None)
            merged.unfinished.pop(rcpt, None)
        merged.delivery.update(result.delivery)
    sender_refused = _sender_refusal(result)
    if sender_refused is not None:
        for rcpt in job.pending:  # (the RCPTs' replies, 503 "need MAIL" and the like, only follow from it)
            merged.refused[rcpt] = sender_refused
    else:
        for rcpt, reply in result.refused.items():
            merged.refused[rcpt] = reply
        if result.outcome is Outcome.REFUSED and isinstance(result.error, SMTPReplyError):
            for rcpt in job.pending:  # refused as a whole (the data): each recipient has that reply
                if rcpt not in result.refused:
                    merged.refused[rcpt] = result.error.reply
    if result.outcome is not Outcome.DELIVERED:
        merged.error = result.error
    return merged


def _sender_refusal(result: SendResult) -> Reply | None:
    """The reply that refused the sender, when that is what refused the message."""
    error = result.error
    return error.reply if result.outcome is Outcome.REFUSED and isinstance(error, SenderRefused) else None


def _is_transient(reply: Reply | None) -> bool:
    return reply is None or reply.is_transient


def _transient(pending: tuple[str, ...], result: SendResult) -> tuple[str, ...]:
    """The recipients of this sending to send again: 4xx as their last word, or never reached."""
    outcome = result.outcome
    if outcome is Outcome.NOT_SENT:
        return pending
    if outcome is Outcome.UNCERTAIN:
        return ()
    if outcome is Outcome.DELIVERED:
        again = [rcpt for rcpt, reply in result.refused.items() if _is_transient(reply)]
        again += [rcpt for rcpt, fate in result.unfinished.items() if fate is Outcome.NOT_SENT]
        return tuple(rcpt for rcpt in pending if rcpt in again)
    sender_refused = _sender_refusal(result)
    if sender_refused is not None:  # the sender's reply decides for every recipient
        return pending if _is_transient(sender_refused) else ()
    # refused: per recipient where it has its own refusal, else the message's (the data)
    whole = result.error.reply if isinstance(result.error, SMTPReplyError) else None
    return tuple(rcpt for rcpt in pending
                 if _is_transient(result.refused.get(rcpt, whole)))


def _uncertain(pending: tuple[str, ...], result: SendResult) -> tuple[str, ...]:
    if result.outcome is Outcome.UNCERTAIN:
        return pending
    if result.outcome is Outcome.DELIVERED:
        return tuple(rcpt for rcpt, fate in result.unfinished.items() if fate is Outcome.UNCERTAIN)
    return ()


def fates(batch: Sequence[Job], error: SMTPError) -> list[SendResult]:
    """Each job's result from the error that cut ``send_many`` short (``completed``, ``uncertain`` and
    ``unsent``, which hand back the very items given)."""
    uncertain = {id(item) for item in error.uncertain}
    unsent = {id(item) for item in error.unsent}
    completed = iter(error.completed)
    results = []
    for job in batch:
        if id(job.item) in uncertain:
            results.append(SendResult(job.sender, job.pending, error=error, outcome=Outcome.UNCERTAIN))
        elif id(job.item) in unsent:
            results.append(SendResult(job.sender, job.pending, error=error, outcome=Outcome.NOT_SENT))
        else:
            # (every message's fate comes with the error; were one missing, uncertain is the safe
            # reading: it is never sent again)
            results.append(next(completed, None)
                           or SendResult(job.sender, job.pending, error=error, outcome=Outcome.UNCERTAIN))
    return results
