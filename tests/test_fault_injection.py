"""Cut the connection at every byte of a pipelined ``send_many`` session: the accounting of every message holds.

The session is connect, ``send_many`` of three messages (one with two
recipients), then ``quit()``.  It is first run uncut, which measures the bytes
each way; then for every offset k of the server's output and of the client's
stream, for a clean close (FIN) and a reset (RST), through both drivers, it is
run against tests/faultserver.py cutting the connection exactly there.  The
sweep is repeated with CHUNKING offered, so the content goes out as BDAT.

Nothing is random and nothing is timed except the bound on each call.  What is checked for every cut:

* the call ends within the client's timeout (plus slack for a loaded machine),
  and only :class:`smtp_fsm.SMTPError` subclasses escape it;
* a message reported ``delivered`` had its final 250 written whole, and that
  reply (its queue id) is the one for that message;
* a message the server stored is reported ``delivered`` or ``uncertain``, never
  ``not_sent`` (resending it would deliver it twice) nor ``refused``;
* a message reported ``not_sent`` was not stored, and not one byte of its
  content (what follows DATA's 354, or a BDAT payload) reached the server:
  ``not_sent`` means none of it was handed to the transport;
* no message is stored twice, and every submitted item is accounted for exactly
  once: in the returned results, or across the error's ``completed``,
  ``uncertain`` and ``unsent`` (items as passed, in order).

The server refuses nothing, so ``refused`` is only right if one of its replies
was a 4xx/5xx (a client misusing the protocol).  A ``quit()`` after
``send_many`` returned may fail (the cut may come after the last 250), but
only with an SMTPError.  A sweep stops after a few failures, so one bug costs
a few timeouts and not one per offset.
"""

from __future__ import annotations

import re
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from drivers import make_client
from faultserver import Cut, FaultServer, Kind, SessionRecord, Side, Stored

from smtp_fsm import SendResult, SMTPError

#: The client's timeout (per reply): a few seconds, so a client waiting for a reply that cannot come shows up.
TIMEOUT = 3.0
#: Slack on top of the timeout for a call's wall-clock bound: CI machines stall.
GRACE = 2.0
#: After the client is done, its socket is closed, so the server's session ends at once; this bounds a leak.
SERVER_WAIT = TIMEOUT + GRACE
#: A sweep stops after this many failing cuts: one bug should not cost a timeout per offset.
MAX_FAILURES = 5

VARIANTS = {
    "data": ("PIPELINING", "8BITMIME"),
    "bdat": ("PIPELINING", "8BITMIME", "CHUNKING"),
}
DRIVER_KINDS = ("sync", "async")
SIDES: tuple[Side, ...] = ("server", "client")
KINDS: tuple[Kind, ...] = ("close", "reset")

Item = tuple[str, Any, bytes]

#: Three small messages; the server names each by its Message-ID.  The recipients are given three ways
#: (a string, a list, a tuple) and differ per message, so a result names its message by its recipients.
MESSAGES: tuple[tuple[str, str | list[str] | tuple[str, ...], str], ...] = (
    ("a@fi.test", "r0@fi.test", "zero"),
    ("a@fi.test", ["r1@fi.test", "r2@fi.test"], "one"),
    ("a@fi.test", ("r3@fi.test",), "two"),
)
KEYS = tuple(f"<m{index}@fi.test>" for index in range(len(MESSAGES)))
RECIPIENTS = tuple((to,) if isinstance(to, str) else tuple(to) for _, to, _ in MESSAGES)
_REFUSAL = re.compile(rb"(?:^|\r\n)[45]\d\d[ -]")


def make_items() -> list[Item]:
    """Fresh objects per run, so "items exactly as passed" can be checked by identity."""
    return [
        (sender, list(to) if isinstance(to, list) else to,
         f"Message-ID: {KEYS[index]}\r\nSubject: m{index}\r\n\r\n{body}\r\n".encode())
        for index, (sender, to, body) in enumerate(MESSAGES)
    ]


@dataclass
class Run:
    """One session through one driver: what the caller saw."""

    driver: str
    cut: Cut | None
    items: list[Item]
    record: SessionRecord
    results: list[SendResult] | None = None
    error: BaseException | None = None  # what escaped connect or send_many (or the with block's exit)
    phase: str = ""  # which call it escaped
    quit_error: BaseException | None = None
    durations: dict[str, float] = field(default_factory=dict)
    server_done: bool = False


def run_session(server: FaultServer, driver: str, cut: Cut | None) -> Run:
    items = make_items()
    run = Run(driver, cut, items, server.arm(cut))
    client = make_client(driver, server.host, server.port, timeout=TIMEOUT, data_timeout=TIMEOUT,
                         local_hostname="client.test")
    phase = "connect"
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        run.durations[name] = run.durations.get(name, 0.0) + now - clock
        clock = now

    try:
        with client as smtp:
            lap("connect")
            phase = "send_many"
            run.results = smtp.send_many(items)
            lap("send_many")
            phase = "quit"
            try:
                smtp.quit()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # judged in check(): an SMTPError is fine here
                run.quit_error = exc
            lap("quit")
            phase = "exit"
        lap("exit")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # anything at all: check() fails what is not an SMTPError
        lap(phase)
        run.error, run.phase = exc, phase
    # The client has closed its socket by now, so the server's session ends without waiting on a timeout.
    run.server_done = run.record.done.wait(SERVER_WAIT)
    return run


# -- judging a run ----------------------------------------------------------------------


def reported_outcomes(run: Run, problems: list[str]) -> dict[int, list[str]]:
    """Item index -> every outcome reported for it (exactly one when the accounting is right)."""
    reported: dict[int, list[str]] = {index: [] for index in range(len(run.items))}

    def by_result(result: object, where: str) -> int | None:
        if not isinstance(result, SendResult):
            problems.append(f"{where}: {result!r} is not a SendResult")
            return None
        if tuple(result.recipients) not in RECIPIENTS:
            problems.append(f"{where}: result for unknown recipients {result.recipients!r}")
            return None
        return RECIPIENTS.index(tuple(result.recipients))

    def by_item(item: object, where: str) -> int | None:
        for index, mine in enumerate(run.items):
            if item is mine:
                return index
        equal = [index for index, mine in enumerate(run.items) if item == mine]
        problems.append(f"{where}: {item!r} is not one of the submitted items"
                        + (" (equal to one, but not the object passed)" if equal else ""))
        return equal[0] if equal else None

    def in_order(indices: Sequence[int | None], where: str) -> None:
        known = [index for index in indices if index is not None]
        if known != sorted(known):
            problems.append(f"{where} not in submission order: items {known}")

    if run.results is not None:
        if len(run.results) != len(run.items):
            problems.append(f"send_many returned {len(run.results)} results for {len(run.items)} items")
        for position, result in enumerate(run.results):
            index = by_result(result, f"send_many()[{position}]")
            if index is None:
                continue
            if index != position:
                problems.append(f"send_many()[{position}] is the result of item {index}: out of order")
            reported[index].append(str(result.outcome))
        return reported
    error = run.error
    if run.phase != "send_many" or not isinstance(error, SMTPError):
        return reported  # nothing was submitted (connect failed), or a non-SMTPError already failed the run
    for name in ("completed", "uncertain", "unsent"):
        if not isinstance(getattr(error, name, None), tuple):
            problems.append(f"error.{name} is {getattr(error, name, None)!r}, not a tuple")
    completed = [by_result(result, "error.completed") for result in tuple(getattr(error, "completed", ()) or ())]
    for index, result in zip(completed, tuple(getattr(error, "completed", ()) or ()), strict=True):
        if index is None:
            continue
        outcome = str(result.outcome)
        if outcome not in ("delivered", "refused"):
            problems.append(f"error.completed holds item {index} with outcome {outcome!r} (only finished ones belong)")
        reported[index].append(outcome)
    uncertain = [by_item(item, "error.uncertain") for item in tuple(getattr(error, "uncertain", ()) or ())]
    unsent = [by_item(item, "error.unsent") for item in tuple(getattr(error, "unsent", ()) or ())]
    for index in uncertain:
        if index is not None:
            reported[index].append("uncertain")
    for index in unsent:
        if index is not None:
            reported[index].append("not_sent")
    in_order(completed, "error.completed")
    in_order(uncertain, "error.uncertain")
    in_order(unsent, "error.unsent")
    return reported


def delivered_replies(run: Run) -> dict[int, str]:
    """Item index -> the text of the final reply a delivered result carries."""
    results: tuple[object, ...] = tuple(run.results or ())
    if run.results is None and isinstance(run.error, SMTPError):
        results = tuple(getattr(run.error, "completed", ()) or ())
    texts = {}
    for result in results:
        if (isinstance(result, SendResult) and str(result.outcome) == "delivered"
                and tuple(result.recipients) in RECIPIENTS):
            texts[RECIPIENTS.index(tuple(result.recipients))] = "" if result.reply is None else str(result.reply.text)
    return texts


def check(run: Run, baseline: SessionRecord) -> list[str]:
    """Every way the run breaks the contract (empty when it holds)."""
    problems: list[str] = []
    record = run.record
    for label, exc in ((run.phase or "call", run.error), ("quit", run.quit_error)):
        if exc is not None and not isinstance(exc, SMTPError):
            trace = "".join(traceback.format_exception(exc)).rstrip().replace("\n", "\n      ")
            problems.append(f"{label} let a non-SMTPError escape: {exc!r}\n      {trace}")
    for name, seconds in run.durations.items():
        if seconds > TIMEOUT + GRACE:
            problems.append(f"{name} took {seconds:.2f} s, past the {TIMEOUT} s timeout (+{GRACE} s slack)")
    # The harness checks itself: a cut that did not happen, or a stream that differs from the uncut one,
    # would make the offsets mean something else.
    if not run.server_done:
        problems.append(f"the server's session was still open {SERVER_WAIT} s after the client finished "
                        f"(the client did not close its connection?)")
    elif run.cut is not None and not record.end.startswith("cut"):
        problems.append(f"harness: the cut never happened (session ended: {record.end})")
    if record.errors:
        problems.append(f"harness: the server failed: {record.errors}")
    if not baseline.out.startswith(record.out) or not baseline.inp.startswith(record.inp):
        problems.append("harness: the byte streams diverged from the uncut session's")

    if run.error is not None and not isinstance(run.error, SMTPError):
        return problems  # no accounting came back at all: that is the failure
    reported = reported_outcomes(run, problems)
    stored_count = Counter(record.stored_keys())
    stored: dict[int, Stored] = {}
    for message in record.stored:
        if message.key not in KEYS:
            problems.append(f"harness: the server stored an unknown message {message.key!r}")
        else:
            stored[KEYS.index(message.key)] = message
    for key, count in stored_count.items():
        if count > 1:
            problems.append(f"{key} was stored {count} times")
    submitted = run.results is not None or run.phase == "send_many"
    refusals = bool(_REFUSAL.search(bytes(record.out)))
    replies = delivered_replies(run)
    for index, outcomes in reported.items():
        name = KEYS[index]
        if submitted and len(outcomes) != 1:
            problems.append(f"{name} reported {len(outcomes)} times: {outcomes or 'never'} (exactly once expected)")
        kept = stored.get(index)
        if kept is not None and not outcomes:
            problems.append(f"{name} was stored by the server, but never reported")
        for outcome in outcomes:
            if outcome == "delivered":
                if kept is None:
                    problems.append(f"{name} reported delivered, but the server never stored it")
                elif not record.final_written(kept):
                    problems.append(f"{name} reported delivered, but its final 250 was not written whole")
                elif kept.queue_id not in replies.get(index, ""):
                    problems.append(f"{name} reported delivered with reply {replies.get(index)!r}, "
                                    f"not its own 250 (queued as {kept.queue_id})")
            elif outcome == "not_sent" and (received := content_received(record, index)):
                problems.append(f"{name} reported not_sent, but {received} bytes of its content reached the server")
            elif outcome == "refused" and not refusals:
                problems.append(f"{name} reported refused, but the server refused nothing")
            elif outcome not in ("uncertain", "not_sent", "refused"):
                problems.append(f"{name} reported with an unknown outcome {outcome!r}")
            if kept is not None and outcome not in ("delivered", "uncertain"):
                problems.append(f"{name} was stored by the server, but reported {outcome}")
    return problems


def content_received(record: SessionRecord, index: int) -> int:
    """Bytes of item ``index``'s content the server read, over every transaction with its recipients."""
    return sum(record.content_received(transaction) for transaction in record.transactions
               if tuple(transaction.recipients) == RECIPIENTS[index])


def describe(run: Run, problems: list[str]) -> str:
    def names(items: Sequence[object]) -> list[str]:
        found = {id(item): KEYS[index] for index, item in enumerate(run.items)}
        return [found.get(id(item), repr(item)) for item in items]

    if run.results is not None:
        calls = f"send_many returned {[str(result.outcome) for result in run.results]}"
    else:
        calls = f"{run.phase} raised {run.error!r}"
        if isinstance(run.error, SMTPError):
            completed = [f"{getattr(result, 'recipients', '?')}: {getattr(result, 'outcome', '?')}"
                         for result in tuple(getattr(run.error, "completed", ()) or ())]
            calls += (f"\n  error.completed={completed} error.uncertain={names(getattr(run.error, 'uncertain', ()))}"
                      f" error.unsent={names(getattr(run.error, 'unsent', ()))}")
    if run.quit_error is not None:
        calls += f"; quit raised {run.quit_error!r}"
    timing = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in run.durations.items())
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return (f"[{run.driver} driver] {run.cut}:\n  {calls}\n  timings: {timing}\n{listed}\n  {run.record.summary()}")


# -- fixtures and tests -------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def server(request: pytest.FixtureRequest) -> Iterator[FaultServer]:
    """One listener per variant for the whole module: the sessions reuse it."""
    with FaultServer(VARIANTS[request.param]) as running:
        yield running
    assert not running.errors, running.errors


_BASELINES: dict[tuple[int, str], SessionRecord] = {}


def baseline(server: FaultServer, driver: str) -> SessionRecord:
    """The uncut session's record (cached per server and driver): its byte counts bound the sweep."""
    key = (server.port, driver)
    if key not in _BASELINES:
        run = run_session(server, driver, None)
        problems = check(run, run.record)
        outcomes = [str(result.outcome) for result in run.results or ()]
        if outcomes != ["delivered"] * len(MESSAGES):
            problems.append(f"uncut, expected every message delivered, got {outcomes}")
        if run.quit_error is not None or run.record.end != "QUIT answered, closed":
            problems.append("uncut, the session did not end with QUIT answered")
        assert not problems, describe(run, problems)
        _BASELINES[key] = run.record
    return _BASELINES[key]


@pytest.mark.parametrize("driver", DRIVER_KINDS)
def test_uncut_session_delivers_all_three(server: FaultServer, driver: str) -> None:
    record = baseline(server, driver)
    assert record.stored_keys() == list(KEYS)
    # The engine is shared: both drivers put the same bytes on the wire, so the sweeps cover the same offsets.
    other = baseline(server, "async" if driver == "sync" else "sync")
    assert (record.out, record.inp) == (other.out, other.inp)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("driver", DRIVER_KINDS)
def test_cut_at_every_byte(server: FaultServer, driver: str, side: Side, kind: Kind) -> None:
    uncut = baseline(server, driver)
    total = len(uncut.out) if side == "server" else len(uncut.inp)
    failures: list[str] = []
    swept = f"k=0..{total}"
    for k in range(total + 1):  # 0 (nothing yet) up to total (after the last byte)
        run = run_session(server, driver, Cut(side, k, kind))
        problems = check(run, uncut)
        if problems:
            failures.append(describe(run, problems))
            if len(failures) >= MAX_FAILURES:
                swept = f"k=0..{k} of {total} (stopped after {MAX_FAILURES} failing cuts)"
                break
    assert not failures, f"{len(failures)} failing cut(s) over {swept}:\n" + "\n\n".join(failures)
