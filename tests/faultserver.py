"""A threaded ESMTP server that cuts the connection at an exact byte offset, for tests/test_fault_injection.py.

One listener on 127.0.0.1 (port 0, so the kernel picks a free port) serves the
sessions one after another: the test arms a :class:`SessionRecord` with its
:class:`Cut`, the client connects, and the next accepted connection serves that
one session.  Reusing the listener keeps a run of a few thousand sessions fast.

The server reads commands from a buffer, so pipelined groups work, and answers
one reply per command.  It flushes its queued replies only when the buffer
holds no complete command, as real servers do, so a pipelined group is answered
in one write.  A message is stored when its whole data has arrived (the "."
line, or the last byte of ``BDAT ... LAST``), *before* its final 250 is queued:
the window a client can never close (RFC 1047) is therefore real here, and the
record says, per message, whether that final reply went out whole.

A cut is deterministic in the byte streams, not in time:

* ``side="server"``: after exactly ``k`` bytes of the server's output have been
  written (a reply is truncated mid-line if need be; ``k=0`` is before the greeting);
* ``side="client"``: after exactly ``k`` bytes of the client's stream have been
  read; what those bytes complete is processed (and answered) as a server would,
  then the server stops (``k=0`` is just after the greeting).

``kind="close"`` ends with a FIN (shutdown, then reading to the client's close so
that unread bytes do not turn the close into a reset); ``kind="reset"`` with an RST
(SO_LINGER on with a zero linger, then close).  Every wait is bounded: sockets
have timeouts and the drain after a FIN reads a bounded number of bytes.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

Side = Literal["server", "client"]
Kind = Literal["close", "reset"]

HOST = "127.0.0.1"
#: The longest the server waits on the client for anything; a client that stalls ends its session.
SOCKET_TIMEOUT = 10.0
_RECV_SIZE = 65536
#: What the server reads (and discards) after a FIN, waiting for the client's own close.
_DRAIN_LIMIT = 1 << 20
#: A session reads at most this much: with the socket timeout, it bounds a session that never ends.
_INPUT_LIMIT = 1 << 20
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_SUBJECT = re.compile(rb"^Subject:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_BDAT = re.compile(r"BDAT (\d{1,9})( LAST)?", re.IGNORECASE)
_ADDRESS = re.compile(r"<([^>]*)>")


@dataclass(frozen=True)
class Cut:
    """Where and how the server ends the connection."""

    side: Side
    k: int
    kind: Kind

    def __str__(self) -> str:
        stream = "writing k bytes of its replies" if self.side == "server" else "reading k bytes of the client's stream"
        return f"{self.side}-side {self.kind} at k={self.k} (after {stream})"


@dataclass
class Stored:
    """A message the server took: stored before its final reply was queued."""

    key: str  # its Message-ID (else its Subject): which submitted item it is
    sender: str
    recipients: tuple[str, ...]
    queue_id: str
    reply_end: int  # offset in the server's output stream just past its final 250's CRLF


@dataclass
class Transaction:
    """One MAIL transaction as the server saw it, stored or not."""

    sender: str
    recipients: list[str] = field(default_factory=list)
    content_from: int | None = None  # offset in the client's stream where its content (after DATA/BDAT) begins


@dataclass
class SessionRecord:
    """What one session did, in byte-exact terms; complete once ``done`` is set."""

    cut: Cut | None
    out: bytearray = field(default_factory=bytearray)  # every byte the kernel accepted from the server, in order
    inp: bytearray = field(default_factory=bytearray)  # every byte of the client's stream the server read
    commands: list[str] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    end: str = "not served"  # how the session ended
    errors: list[str] = field(default_factory=list)  # harness bugs: unexpected exceptions in the server
    done: threading.Event = field(default_factory=threading.Event)

    def final_written(self, message: Stored) -> bool:
        """Whether the message's final 250 was handed to the kernel whole (possibly followed by an RST)."""
        return len(self.out) >= message.reply_end

    def content_received(self, transaction: Transaction) -> int:
        """How many bytes of the transaction's content reached the server (read before any cut)."""
        if transaction.content_from is None:
            return 0
        return max(len(self.inp) - transaction.content_from, 0)

    def stored_keys(self) -> list[str]:
        return [message.key for message in self.stored]

    def summary(self) -> str:
        stored = ", ".join(
            f"{m.key} (final 250 {'written whole' if self.final_written(m) else 'NOT written whole'})"
            for m in self.stored
        )
        return (
            f"server record: end={self.end!r}; wrote {len(self.out)} bytes, read {len(self.inp)} bytes; "
            f"stored=[{stored}]; content bytes received per transaction="
            f"{[(t.recipients, self.content_received(t)) for t in self.transactions]}; "
            f"commands={self.commands}; errors={self.errors}\n"
            f"  server wrote: {bytes(self.out)!r}\n"
            f"  server read:  {bytes(self.inp)!r}"
        )


class _CutNow(Exception):
    """The byte budget ran out: end the connection as the cut says."""


class FaultServer:
    """The listener and its thread; ``arm`` a record before each client connects."""

    def __init__(self, keywords: tuple[str, ...] = ("PIPELINING", "8BITMIME")) -> None:
        self.keywords = keywords
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(8)
        # accept() wakes up this often to notice stop(); a connection is taken at once.
        self._listener.settimeout(0.2)
        self.host: str = HOST
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: SessionRecord | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="faultserver", daemon=True)
        self.errors: list[str] = []  # harness bugs outside any armed session

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(SOCKET_TIMEOUT + 5)
        self._listener.close()

    def arm(self, cut: Cut | None) -> SessionRecord:
        """The record (and cut) for the next connection accepted."""
        record = SessionRecord(cut)
        with self._lock:
            self._armed = record
        return record

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                self.errors.append(f"accept failed: {exc!r}")
                return
            with self._lock:
                record, self._armed = self._armed, None
            if record is None:
                # Served uncut so that whoever it is does not hang; the test sees the complaint.
                self.errors.append("a connection arrived with no session armed")
                record = SessionRecord(None)
            try:
                _Session(self.keywords, conn, record).run()
            except Exception as exc:  # a harness bug: keep serving, the test reports it
                record.errors.append(repr(exc))
            finally:
                conn.close()
                record.done.set()


class _Session:
    """One connection: commands in from a buffer, replies out through the byte budget."""

    def __init__(self, keywords: tuple[str, ...], conn: socket.socket, record: SessionRecord) -> None:
        self.keywords = keywords
        self.conn = conn
        self.record = record
        cut = record.cut
        self.out_budget = cut.k if cut is not None and cut.side == "server" else None
        self.in_budget = cut.k if cut is not None and cut.side == "client" else None
        self.buffer = b""
        self.pending: list[bytes] = []
        self.queued = 0  # bytes of output queued so far, written or pending: where the next reply starts
        self.mode: Literal["command", "data", "bdat"] = "command"
        self.chunk_left = 0
        self.chunk_last = False
        self.chunk_wanted = False  # False: a BDAT outside a transaction, whose bytes are read and dropped
        self.reset()
        conn.settimeout(SOCKET_TIMEOUT)
        # Replies go out as written: Nagle would hold the second small write of a session for an ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reset(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.content: list[bytes] = []

    # -- the conversation -----------------------------------------------------------

    def run(self) -> None:
        try:
            if self.out_budget == 0:
                raise _CutNow
            self.reply("220 fault.test ESMTP")
            while True:
                quitting = self.process()
                self.flush()  # raises _CutNow when the output budget runs out
                if self.in_budget is not None and len(self.record.inp) >= self.in_budget:
                    raise _CutNow  # even after QUIT: the cut is what this session is for
                if quitting:
                    self.record.end = "QUIT answered, closed"
                    self.close_cleanly()
                    return
                if not self.fill():
                    self.record.end = "client closed"
                    return
                if len(self.record.inp) > _INPUT_LIMIT:
                    self.record.end = f"client sent more than {_INPUT_LIMIT} bytes"
                    return
        except _CutNow:
            assert self.record.cut is not None
            self.record.end = f"cut ({self.record.cut.kind})"
            self.cut(self.record.cut.kind)
        except TimeoutError:
            self.record.end = f"client silent for {SOCKET_TIMEOUT} s"
        except OSError as exc:  # the client reset the connection while we wrote or read
            self.record.end = f"client went away: {exc!r}"

    def fill(self) -> bool:
        """Read what the client sent (never past the input budget); False at its close."""
        size = _RECV_SIZE
        if self.in_budget is not None:
            size = min(size, self.in_budget - len(self.record.inp))
        data = self.conn.recv(size)
        self.record.inp += data
        self.buffer += data
        return bool(data)

    def reply(self, line: str) -> None:
        data = line.encode() + b"\r\n"
        self.pending.append(data)
        self.queued += len(data)

    def flush(self) -> None:
        """Write the queued replies, or as much of them as the output budget allows."""
        data = b"".join(self.pending)
        self.pending = []
        if self.out_budget is not None:
            data = data[: self.out_budget - len(self.record.out)]
        view = memoryview(data)
        sent = 0
        while sent < len(data):
            # send(), not sendall(): the record must hold exactly what the kernel took if the client resets us.
            count = self.conn.send(view[sent:])
            self.record.out += view[sent : sent + count]
            sent += count
        if self.out_budget is not None and len(self.record.out) >= self.out_budget:
            raise _CutNow

    def cut(self, kind: Kind) -> None:
        if kind == "reset":
            # SO_LINGER on with a zero linger: close() sends an RST and drops whatever is unsent.
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.conn.close()
        else:
            self.close_cleanly()

    def close_cleanly(self) -> None:
        """FIN, then read to the client's close: closing with unread bytes would send an RST instead."""
        try:
            self.conn.shutdown(socket.SHUT_WR)
            drained = 0
            while drained < _DRAIN_LIMIT:
                data = self.conn.recv(_RECV_SIZE)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass  # the client reset or stalled: it has the FIN either way
        self.conn.close()

    # -- commands ---------------------------------------------------------------------

    def process(self) -> bool:
        """Handle everything complete in the buffer (commands, data lines, chunks); True after QUIT."""
        while True:
            if self.mode == "bdat":
                taken = self.buffer[: self.chunk_left]
                self.buffer = self.buffer[len(taken) :]
                self.chunk_left -= len(taken)
                if self.chunk_wanted:
                    self.content.append(taken)
                if self.chunk_left:
                    return False
                self.end_chunk()
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return False
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if self.mode == "data":
                if line == b".":
                    self.mode = "command"
                    self.store()
                else:
                    # RFC 5321 §4.5.2: a leading dot was doubled by the client.
                    self.content.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
                continue
            if self.command(line.decode("utf-8", "replace")):
                return True

    def command(self, line: str) -> bool:
        self.record.commands.append(line)
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            self.reset()
            if verb == "HELO":
                self.reply("250 fault.test")
            else:
                lines = ["fault.test", *self.keywords]
                for keyword in lines[:-1]:
                    self.reply(f"250-{keyword}")
                self.reply(f"250 {lines[-1]}")
        elif verb == "MAIL":
            if self.sender is not None:
                self.reply("503 5.5.1 nested MAIL")
            else:
                self.reset()
                self.sender = self.address(line)
                self.record.transactions.append(Transaction(self.sender))
                self.reply("250 2.1.0 sender ok")
        elif verb == "RCPT":
            if self.sender is None:
                self.reply("503 5.5.1 need MAIL first")
            else:
                self.recipients.append(self.address(line))
                self.record.transactions[-1].recipients.append(self.recipients[-1])
                self.reply("250 2.1.5 recipient ok")
        elif verb == "DATA":
            if self.sender is None or not self.recipients:
                self.reply("503 5.5.1 no valid recipients")
            else:
                self.mode = "data"
                self.content_begins()
                self.reply("354 end with <CRLF>.<CRLF>")
        elif verb == "BDAT" and "CHUNKING" in self.keywords:
            match = _BDAT.fullmatch(line)
            if match is None:
                self.reply("501 5.5.4 syntax: BDAT size [LAST]")
            else:
                self.mode = "bdat"
                self.chunk_left = int(match.group(1))
                self.chunk_last = match.group(2) is not None
                self.chunk_wanted = self.sender is not None and bool(self.recipients)
                if self.chunk_wanted:
                    self.content_begins()
        elif verb == "RSET":
            self.reset()
            self.reply("250 2.0.0 reset")
        elif verb == "NOOP":
            self.reply("250 2.0.0 ok")
        elif verb == "QUIT":
            self.reply("221 2.0.0 bye")
            return True
        else:
            self.reply("500 5.5.1 command not recognized")
        return False

    def content_begins(self) -> None:
        """Note where the content starts: the buffer now holds what follows the command's line."""
        transaction = self.record.transactions[-1]
        if transaction.content_from is None:
            transaction.content_from = len(self.record.inp) - len(self.buffer)

    def end_chunk(self) -> None:
        self.mode = "command"
        if not self.chunk_wanted:
            self.reply("503 5.5.1 no valid recipients")
        elif self.chunk_last:
            self.store()
        else:
            self.reply("250 2.0.0 chunk ok")

    def store(self) -> None:
        """Keep the message, then queue its final 250: stored before a byte of that reply is written."""
        content = b"".join(self.content)
        found = _MESSAGE_ID.search(content) or _SUBJECT.search(content)
        key = found.group(1).decode("utf-8", "replace") if found else f"unnamed #{len(self.record.stored)}"
        assert self.sender is not None
        queue_id = f"FI{len(self.record.stored) + 1}"
        line = f"250 2.0.0 queued as {queue_id}"
        reply_end = self.queued + len(line) + 2
        self.record.stored.append(Stored(key, self.sender, tuple(self.recipients), queue_id, reply_end))
        self.reply(line)
        self.reset()

    @staticmethod
    def address(line: str) -> str:
        match = _ADDRESS.search(line)
        return match.group(1) if match else ""
