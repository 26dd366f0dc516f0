"""A scripted SMTP server on 127.0.0.1 that plays a transcript against any client and records deviations.

The transcript's ``S:`` lines are what the server sends; its ``C:`` lines are
what it expects back (``<credentials>`` matches any credential).  When the
client writes something else, the server records a failure naming the step,
the transcript line, the expected and the actual bytes, answers ``421`` and
closes.  Tests assert with ``server.assert_ok()`` (or look at
``server.failures``).

The server runs in a thread with blocking sockets, so it serves the blocking
and the asyncio driver alike (``with`` or ``async with``).  Everything is
bounded: each connection has a deadline (``timeout``), reads poll in short
slices, and ``stop()`` ends a connection that is still waiting.

Hostile behaviours (smtp_fsm.testing.hostile) rewrite the script of actions
the transcript compiles to.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from ..transcript import Transcript, TranscriptLine, match_lines, parse_transcript

_SLICE = 0.05  # seconds per blocking read; bounds how late a stop is noticed
_GRACE = 3.0  # seconds stop() lets a connection finish before cutting it short
DEVIATION_REPLY = b"421 4.3.0 scripted server: the client deviated from the transcript\r\n"


# -- the script: what the server does, in order --------------------------------------

@dataclass(frozen=True)
class Send:
    """Write ``data`` (one server chunk); with ``byte_delay`` one byte at a time."""

    data: bytes
    step: int = 0
    lineno: int = 0
    byte_delay: float = 0.0


@dataclass(frozen=True)
class Expect:
    """Read until the client has written ``lines``."""

    lines: tuple[TranscriptLine, ...]
    step: int = 0


@dataclass(frozen=True)
class Close:
    """Close the connection now."""

    step: int = 0


@dataclass(frozen=True)
class Hang:
    """Never answer: keep the connection open, read and ignore, until the client leaves (or the deadline)."""

    step: int = 0


@dataclass(frozen=True)
class Drain:
    """The end: wait for the client to close.  ``strict``: bytes from the client are a failure."""

    strict: bool = True


Action = Send | Expect | Close | Hang | Drain
#: A behaviour rewrites the script (see smtp_fsm.testing.hostile).
Behaviour = Callable[[list[Action]], list[Action]]


def compile_script(transcript: Transcript) -> list[Action]:
    """The transcript as actions: each server chunk a Send (or Close), each client block an Expect."""
    actions: list[Action] = []
    for exchange in transcript:
        for chunk in exchange.chunks:
            actions.append(Close(chunk.step) if chunk.close else Send(chunk.data, chunk.step, chunk.lineno))
        if exchange.client:
            last = exchange.chunks[-1].step if exchange.chunks else 0
            actions.append(Expect(exchange.client, last))
    if not any(isinstance(action, Close) for action in actions):
        actions.append(Drain())
    return actions


def step_index(actions: Sequence[Action], step: int) -> int:
    """Index of the Send or Close for server step ``step`` (1-based: step 1 is the greeting)."""
    for index, action in enumerate(actions):
        if isinstance(action, (Send, Close)) and action.step == step:
            return index
    steps = [a.step for a in actions if isinstance(a, (Send, Close))]
    raise ValueError(f"the transcript has no server step {step} (it has steps {steps[:1]}..{steps[-1:]})")


# -- what went wrong ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Deviation:
    """One way a client departed from the transcript: ``summary`` is the line ``failures`` lists."""

    connection: int
    summary: str
    lineno: int = 0  # the transcript line it concerns
    #: What went wrong, in a few words ("wrote something else", "closed the connection", ...).
    problem: str = ""
    expected: bytes = b""  # what the transcript expects from that line on
    wrote: bytes = b""  # what the client wrote instead (from where it departed)

    def describe(self, transcript: Transcript) -> str:
        """The deviation for a test's failure: the problem first, then the bytes, then the transcript."""
        head = f"the client deviated from the transcript: it {self.problem or 'did something else'}"
        if self.lineno:
            head += f" at line {self.lineno}"
        lines = [f"{head} (connection {self.connection})"]
        if self.expected:
            lines.append(f"  expected: {self.expected[:300]!r}")
        if self.wrote or self.expected:
            lines.append(f"  wrote:    {self.wrote[:300]!r}")
        if self.lineno:
            lines += ["  transcript:", transcript.excerpt(self.lineno)]
        return "\n".join(lines)


# -- the server ------------------------------------------------------------------------------

class ScriptedSMTPServer:
    """Plays a transcript to each client that connects (one at a time), on 127.0.0.1 and a free port.

    ``behaviours`` rewrite the script (hostile servers); ``timeout`` bounds
    each connection; ``connections`` is how many clients it serves.
    """

    def __init__(self, transcript: Transcript | str, *behaviours: Behaviour, timeout: float = 10.0,
                 connections: int = 1) -> None:
        self.transcript = parse_transcript(transcript) if isinstance(transcript, str) else transcript
        actions = compile_script(self.transcript)
        for behaviour in behaviours:
            actions = behaviour(actions)
        self.actions: tuple[Action, ...] = tuple(actions)
        self.timeout = timeout
        self.connections = connections
        self.host = "127.0.0.1"
        #: Every deviation, as one line each (``deviations`` has them with their transcript line).
        self.failures: list[str] = []
        self.deviations: list[Deviation] = []
        #: Things worth knowing that are not failures (a client giving up on a dripping reply).
        self.notes: list[str] = []
        #: Every byte each client wrote, one entry per connection.
        self.received: list[bytes] = []
        self.served = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._done = threading.Event()
        self._playing = threading.Event()  # a connection is being played now
        self._idle = threading.Event()  # none is
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> ScriptedSMTPServer:
        """Start serving the transcript in a thread; returns self."""
        self._listener.listen(4)
        self._listener.settimeout(_SLICE)
        self._thread = threading.Thread(target=self._serve, name=f"scripted-smtp-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; let a connection in progress finish (bounded), then cut it short."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_GRACE)
            if self._thread.is_alive():
                self._abort.set()
                self._thread.join(self.timeout + _GRACE)
            self._thread = None
        self._listener.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every expected connection was played; True when they were."""
        return self._done.wait(self.timeout + _GRACE if timeout is None else timeout)

    def __enter__(self) -> ScriptedSMTPServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> ScriptedSMTPServer:
        return self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        import asyncio  # (only here: the toolkit is loaded without asyncio)

        await asyncio.to_thread(self.stop)

    @property
    def ok(self) -> bool:
        """True when no client deviated from the transcript."""
        return not self.failures

    def assert_ok(self) -> None:
        """Raise AssertionError listing every deviation the server saw, each with its transcript lines."""
        __tracebackhide__ = True  # the failure is the client's, not this method's
        if self.deviations:
            raise AssertionError(self.report())

    def report(self, deviations: Sequence[Deviation] | None = None) -> str:
        """The deviations (by default all) as text: each one, and the transcript lines around it."""
        chosen = self.deviations if deviations is None else deviations
        return "\n".join(f"scripted SMTP server: {deviation.describe(self.transcript)}" for deviation in chosen)

    def settle(self, timeout: float = 0.5) -> None:
        """Wait (at most ``timeout``) for a connection still being played -- or waiting to be accepted --
        to end, so that what its client did last is recorded (a client that closed early is noticed
        within one read slice)."""
        deadline = time.monotonic() + timeout
        quiet = 0  # consecutive looks with nothing to wait for (two: a connection being accepted right
        while time.monotonic() < deadline and not self._done.is_set():  # now is not missed); bounded
            waiting = self._listener.fileno() >= 0 and bool(select.select([self._listener], [], [], 0)[0])
            quiet = 0 if waiting or self._playing.is_set() else quiet + 1
            if quiet >= 2:
                return
            time.sleep(_SLICE / 5)

    def check_connected(self) -> None:
        """Record a deviation when fewer clients connected than the transcript was to be played to."""
        with self._lock:
            missing = self.connections - self.served
            if missing > 0 and not any(d.problem == "never connected" for d in self.deviations):
                what = "the client never connected" if self.served == 0 else (
                    f"only {self.served} of {self.connections} clients connected")
                self.failures.append(f"connection {self.served + 1}: {what}")
                self.deviations.append(Deviation(self.served + 1, what, 0, "never connected"))

    # -- the thread ---------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        with self._lock:
            self.notes.append(f"connection {self.served}: {message}")

    def _fail(self, message: str, lineno: int = 0, problem: str = "", expected: bytes = b"",
              wrote: bytes = b"") -> None:
        with self._lock:
            self.failures.append(f"connection {self.served}: {message}")
            self.deviations.append(Deviation(self.served, message, lineno, problem, expected, wrote))

    def _serve(self) -> None:
        try:
            while self.served < self.connections and not self._stopping.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                self._playing.set()
                self.served += 1
                self._idle.clear()
                try:
                    with conn:
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        _Connection(self, conn).play()
                finally:
                    self._playing.clear()
                    self._idle.set()
        finally:
            self._done.set()


class _Connection:
    """One client connection playing the script."""

    def __init__(self, server: ScriptedSMTPServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.deadline = time.monotonic() + server.timeout
        self.buffer = b""
        self.received: list[bytes] = []
        self.gone = False

    def play(self) -> None:
        try:
            for action in self.server.actions:
                if not self._do(action):
                    break
        finally:
            with self.server._lock:
                self.server.received.append(b"".join(self.received))

    # Each action returns False when the connection is over.
    def _do(self, action: Action) -> bool:
        if isinstance(action, Send):
            return self._send(action)
        if isinstance(action, Expect):
            return self._expect(action)
        if isinstance(action, Close):
            self._close()
            return False
        if isinstance(action, Hang):
            self._wait_for_close(strict=False)
            return False
        self._wait_for_close(strict=action.strict)
        return False

    def _send(self, action: Send) -> bool:
        if self.gone:
            return True  # the next Expect reports it, if the client still owed something
        try:
            if action.byte_delay <= 0:
                self.conn.sendall(action.data)
                return True
            for index in range(len(action.data)):
                if time.monotonic() > self.deadline or self.server._abort.is_set():
                    return False
                self.conn.sendall(action.data[index : index + 1])
                time.sleep(action.byte_delay)
                if self._client_closed():
                    # Giving up on a reply that drips too slowly is what a client should do.
                    self.server._note(f"the client closed while step {action.step} was dripping")
                    return False
        except OSError:
            self.gone = True
        return True

    def _client_closed(self) -> bool:
        readable, _, _ = select.select([self.conn], [], [], 0)
        if not readable:
            return False
        try:
            return self.conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _read(self) -> bytes | None:
        """Bytes from the client, b"" when it closed, None when nothing came in this slice."""
        if self.gone:
            return b""
        try:
            self.conn.settimeout(_SLICE)
            data = self.conn.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            data = b""
        if not data:
            self.gone = True
        self.received.append(data)
        return data

    def _expect(self, action: Expect) -> bool:
        where = f"after step {action.step} (transcript line {action.lines[0].lineno})"
        while True:
            found = match_lines(action.lines, self.buffer)
            if found.status == "ok":
                self.buffer = self.buffer[found.consumed :]
                return True
            if found.status == "mismatch":
                line = action.lines[found.index]
                expected = b"".join(x.data for x in action.lines[found.index :])
                wrote = self.buffer[found.offset :]
                self.server._fail(f"{where}: the client wrote {wrote[:300]!r}; transcript line {line.lineno} "
                                  f"expects {expected[:300]!r}", line.lineno, "wrote something else", expected, wrote)
                self._say_goodbye()
                return False
            if time.monotonic() > self.deadline or self.server._abort.is_set():
                why = "timed out" if time.monotonic() > self.deadline else "was stopped"
                line = action.lines[found.index]
                wrote = self.buffer[found.offset :]
                self.server._fail(f"{where}: the server {why} waiting for transcript line {line.lineno}: "
                                  f"{line.data!r} (the client wrote {wrote[:300]!r})", line.lineno,
                                  f"never wrote it (the server {why} waiting)", line.data, wrote)
                return False
            data = self._read()
            if data == b"":
                line = action.lines[found.index]
                wrote = self.buffer[found.offset :]
                self.server._fail(f"{where}: the client closed the connection; transcript line {line.lineno} "
                                  f"expects {line.data!r} (the client wrote {wrote[:300]!r})", line.lineno,
                                  "closed the connection early", line.data, wrote)
                return False
            if data:
                self.buffer += data

    def _say_goodbye(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sendall(DEVIATION_REPLY)
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.gone = True

    def _wait_for_close(self, strict: bool) -> None:
        extra = self.buffer
        while time.monotonic() < self.deadline and not self.server._abort.is_set():
            data = self._read()
            if data == b"":
                break
            if data:
                extra += data
        if strict and extra:
            last = max((line.lineno for exchange in self.server.transcript
                        for line in (*exchange.server, *exchange.client)), default=0)
            self.server._fail(f"after the end of the transcript the client wrote {extra[:300]!r}", last,
                              "wrote after the end of the transcript", b"", extra)


__all__ = [
    "DEVIATION_REPLY",
    "Action",
    "Behaviour",
    "Close",
    "Deviation",
    "Drain",
    "Expect",
    "Hang",
    "ScriptedSMTPServer",
    "Send",
    "compile_script",
    "step_index",
]
