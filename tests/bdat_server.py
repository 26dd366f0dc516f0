"""A CHUNKING server on 127.0.0.1 for the BDAT window's tests: real sockets, strict on request.

It reads what has arrived, answers every complete command in it, then writes the replies: the
commands of one read are one pipelined group as the server sees it.  ``strict`` refuses with 503 a
command that came in the same group as the one whose reply it wants first:

- ``"rfc3030"``: a BDAT in the same group as its transaction's RCPT (RFC 3030 §2 read strictly);
- ``"group"``: a MAIL in the same group as the BDAT LAST before it (each BDAT group a round trip).

Refused for the order, a transaction is dropped whole (503 to each of its commands) until the next
MAIL after an RSET or a later group.  ``reply_padding`` makes each reply to RCPT that many octets
long (a legal multi-line reply), written as soon as it is made, over small socket buffers: a client
that writes everything before it reads anything then deadlocks with it (RFC 2920 §3.1).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

OK = b"250 2.0.0 ok\r\n"
EHLO = b"250-bdat.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"
REFUSED_FOR_ORDER = b"503 5.5.1 Error: improper use of command pipelining\r\n"
#: No test connection lives longer than this (the accept loop and each read are bounded too).
SECONDS = 60.0


@dataclass
class Stored:
    sender: bytes
    recipients: list[bytes]
    content: bytes


@dataclass
class _Conn:
    sender: bytes | None = None
    rcpts: list[bytes] = field(default_factory=list)
    content: bytearray = field(default_factory=bytearray)
    refusing: bool = False
    rcpt_group: int = -1  # the group the last RCPT came in
    last_group: int = -1  # the group the last BDAT LAST came in


class BdatServer:
    def __init__(self, strict: str | None = None, reply_padding: int = 0) -> None:
        self.strict, self.reply_padding = strict, reply_padding
        self.stored: list[Stored] = []
        self.groups_with_transaction_replies = 0  # the round trips the client waited for
        self.refused_for_order = 0
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if reply_padding:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(1.0)
        self.host, self.port = self.listener.getsockname()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> BdatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(SECONDS)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _padded(self, reply: bytes) -> bytes:
        if not self.reply_padding:
            return reply
        line = b"250-" + b"x" * 996 + b"\r\n"
        return line * max(0, self.reply_padding // len(line)) + reply

    def _serve(self, sock: socket.socket) -> None:
        if self.reply_padding:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.settimeout(SECONDS)
        state, buf, group = _Conn(), bytearray(), 0
        need = 0  # chunk octets still to come
        last_chunk = False
        with sock:
            sock.sendall(b"220 bdat.test ESMTP\r\n")
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                group += 1
                replies: list[bytes] = []
                transaction = False
                while True:
                    if need:
                        take = min(need, len(buf))
                        state.content += buf[:take]
                        del buf[:take]
                        need -= take
                        if need:
                            break
                        replies.append(self._chunk_done(state, last_chunk, group))
                        transaction = True
                        continue
                    eol = buf.find(b"\r\n")
                    if eol < 0:
                        break
                    line = bytes(buf[:eol])
                    del buf[: eol + 2]
                    verb = line[:4].upper()
                    if verb == b"BDAT":
                        words = line.split()
                        need, last_chunk = int(words[1]), len(words) > 2
                        refuse = self.strict == "rfc3030" and state.rcpt_group == group
                        state.refusing = state.refusing or refuse or state.sender is None
                        if need == 0:
                            replies.append(self._chunk_done(state, last_chunk, group))
                        transaction = True
                        continue
                    reply = self._command(state, verb, line, group)
                    if reply is None:
                        sock.sendall(b"".join(replies) + b"221 2.0.0 bye\r\n")
                        return
                    transaction = transaction or verb in (b"MAIL", b"RCPT")
                    if verb == b"RCPT" and self.reply_padding:
                        sock.sendall(b"".join(replies) + reply)  # at once, blocking: see the docstring
                        replies = []
                        continue
                    replies.append(reply)
                if replies:
                    sock.sendall(b"".join(replies))
                with self.lock:
                    self.groups_with_transaction_replies += transaction
                    self.refused_for_order += replies.count(REFUSED_FOR_ORDER)

    def _command(self, state: _Conn, verb: bytes, line: bytes, group: int) -> bytes | None:
        if verb in (b"EHLO", b"LHLO"):
            return EHLO
        if verb == b"QUIT":
            return None
        if verb == b"RSET":
            state.sender, state.rcpts, state.refusing = None, [], False
            state.content.clear()
            return OK
        if verb == b"MAIL":
            if self.strict == "group" and state.last_group == group:
                state.refusing = True
                return REFUSED_FOR_ORDER
            if state.sender is not None:
                return b"503 5.5.1 Error: nested MAIL command\r\n"
            state.sender, state.rcpts, state.refusing = line, [], False
            state.content.clear()
            return OK
        if verb == b"RCPT":
            state.rcpt_group = group
            if state.refusing or state.sender is None:
                return REFUSED_FOR_ORDER
            state.rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0])
            return self._padded(OK)
        return OK

    def _chunk_done(self, state: _Conn, last: bool, group: int) -> bytes:
        if state.refusing:
            if last:
                state.sender, state.rcpts, state.refusing = None, [], False  # the transaction is dropped
                state.last_group = group
            return REFUSED_FOR_ORDER
        if not last:
            return OK
        assert state.sender is not None
        with self.lock:
            self.stored.append(Stored(state.sender, list(state.rcpts), bytes(state.content)))
        state.sender, state.rcpts = None, []
        state.content.clear()
        state.last_group = group
        return OK
