"""A small ESMTP server for the extensions aiosmtpd lacks: CHUNKING, DSN, ENHANCEDSTATUSCODES, 452.

It serves one connection at a time on 127.0.0.1, in a thread, and records
every command line and every message (with the ESMTP parameters as sent).
It reads commands from a buffer, so pipelined groups work; with
``hold_replies_until_data`` it answers nothing until the whole MAIL/RCPT/DATA
group has arrived, which makes a client that does not pipeline hang (and a
test of pipelining meaningful).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

_TIMEOUT = 10.0


@dataclass
class ESMTPMessage:
    mail: str
    rcpts: list[str]
    content: bytes


@dataclass
class ESMTPServer:
    keywords: tuple[str, ...] = ("PIPELINING", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE 1000000")
    max_recipients: int | None = None  # beyond this, RCPT gets 452 (RFC 5321 §4.5.3.1.10)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> reply line
    hold_replies_until_data: bool = False
    shutdown_after: int | None = None  # after this many messages, answer MAIL with 421 and close
    shutdown_reply: str | None = "421 4.3.2 shutting down"  # None: close without a word
    commands: list[str] = field(default_factory=list)
    messages: list[ESMTPMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host = "127.0.0.1"
        # Port 0: the kernel picks a free port for this very socket, so parallel test workers never race.
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ESMTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(_TIMEOUT)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(_TIMEOUT)
                try:
                    _Connection(self, conn).run()
                except (OSError, ValueError) as exc:
                    self.errors.append(repr(exc))


class _Connection:
    def __init__(self, server: ESMTPServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.buffer = b""
        self.pending: list[bytes] = []
        self.reset()

    def reset(self) -> None:
        self.mail: str | None = None
        self.rcpts: list[str] = []
        self.chunks: list[bytes] = []
        self.chunk_failed = False

    def reply(self, line: str) -> None:
        self.pending.append(line.encode() + b"\r\n")
        holding = self.server.hold_replies_until_data and self.mail is not None
        if not holding:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.conn.sendall(b"".join(self.pending))
            self.pending = []

    def fill(self) -> bool:
        data = self.conn.recv(65536)
        self.buffer += data
        return bool(data)

    def line(self) -> str | None:
        while b"\r\n" not in self.buffer:
            if not self.fill():
                return None
        raw, self.buffer = self.buffer.split(b"\r\n", 1)
        return raw.decode("utf-8", "replace")

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self.fill():
                raise ValueError("connection closed inside a BDAT chunk")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def run(self) -> None:
        self.reply("220 esmtp.test ESMTP ready")
        while (line := self.line()) is not None:
            self.server.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            handler = getattr(self, f"do_{verb}", None)
            if handler is None:
                self.reply("500 5.5.1 command not recognized")
            elif handler(line) is False:
                return

    def do_EHLO(self, line: str) -> None:
        lines = ["esmtp.test", *self.server.keywords]
        for keyword in lines[:-1]:
            self.pending.append(f"250-{keyword}\r\n".encode())
        self.reply(f"250 {lines[-1]}")

    def do_MAIL(self, line: str) -> bool | None:
        limit = self.server.shutdown_after
        if limit is not None and len(self.server.messages) >= limit:
            if self.server.shutdown_reply is not None:
                self.reply(self.server.shutdown_reply)
            self.flush()
            return False
        self.reset()
        self.mail = line
        self.reply("250 2.1.0 sender ok")
        return None

    def do_RCPT(self, line: str) -> None:
        address = line.split("<", 1)[1].split(">", 1)[0]
        if self.mail is None:
            self.reply("503 5.5.1 need MAIL first")
        elif address in self.server.refuse:
            self.reply(self.server.refuse[address])
        elif self.server.max_recipients is not None and len(self.rcpts) >= self.server.max_recipients:
            self.reply("452 4.5.3 too many recipients")
        else:
            self.rcpts.append(line)
            self.reply("250 2.1.5 recipient ok")

    def do_DATA(self, line: str) -> None:
        if self.mail is None or not self.rcpts:
            self.reply("554 5.5.1 no valid recipients")
            self.mail = None
            self.flush()
            return
        self.reply("354 go ahead")
        self.flush()
        end = self.buffer.find(b"\r\n.\r\n")
        while end < 0 and not self.buffer.startswith(b".\r\n"):
            if not self.fill():
                raise ValueError("connection closed inside DATA")
            end = self.buffer.find(b"\r\n.\r\n")
        if self.buffer.startswith(b".\r\n"):
            content, self.buffer = b"", self.buffer[3:]
        else:
            content, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
        content = content.replace(b"\r\n..", b"\r\n.")
        if content.startswith(b".."):
            content = content[1:]
        self.finish(content)

    def do_BDAT(self, line: str) -> None:
        words = line.split()
        size = int(words[1])
        last = len(words) > 2 and words[2].upper() == "LAST"
        chunk = self.exactly(size)
        if self.mail is None or not self.rcpts or self.chunk_failed:
            self.chunk_failed = True
            self.reply("503 5.5.1 no valid transaction")
            if last:
                self.mail = None
                self.flush()
            return
        self.chunks.append(chunk)
        if last:
            self.finish(b"".join(self.chunks))
        else:
            self.reply(f"250 2.0.0 {size} octets received")

    def finish(self, content: bytes) -> None:
        assert self.mail is not None
        self.server.messages.append(ESMTPMessage(self.mail, list(self.rcpts), content))
        self.reply(f"250 2.0.0 queued as Q{len(self.server.messages)}")
        self.reset()
        self.flush()

    def do_RSET(self, line: str) -> None:
        self.reset()
        self.reply("250 2.0.0 reset")

    def do_NOOP(self, line: str) -> None:
        self.reply("250 2.0.0 ok")

    def do_QUIT(self, line: str) -> bool:
        self.reply("221 2.0.0 bye")
        self.flush()
        return False
