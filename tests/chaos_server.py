"""An ESMTP server that fails at random, for the pools' fault tests: it cuts connections at any point,
answers 421 and 4xx, and records exactly what it stored.

It runs an asyncio loop in a thread on 127.0.0.1 (port 0: the kernel picks), serves many connections
at once, offers PIPELINING (and CHUNKING with ``chunking=True``) and answers each command as it reads
it.  A message is stored when its whole content has arrived, *before* its final reply is written; the
server may then cut the connection instead of replying (the window no client can close, RFC 1047):
that message's client sees no final reply, and its result must be ``uncertain``.  Faults are drawn
from a seeded ``random.Random``; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

HOST = "127.0.0.1"
_TIMEOUT = 10.0
#: Seconds a message to a ``slow`` recipient waits for its 250.
SLOW_REPLY = 2.0
_SUBJECT = re.compile(rb"^Subject: (.*?)\r$", re.MULTILINE)
_ADDRESS = re.compile(rb"<([^>]*)>")


class _Cut(Exception):
    """The server drops the connection here."""


@dataclass
class Faults:
    """Chances per command (or per message content) of each fault."""

    cut: float = 0.01  # close without a word, before answering a command
    shutdown: float = 0.01  # 421, then close
    transient: float = 0.03  # 451 to MAIL, RCPT or the end of the content
    cut_after_store: float = 0.01  # store the message, then close instead of the final 250
    permanent_rcpt: float = 0.02  # 550 to a RCPT (final for that recipient)


class ChaosServer:
    """``stored`` counts each (subject, recipient) stored; ``connections`` those accepted."""

    def __init__(self, faults: Faults | None = None, seed: int = 0, chunking: bool = False,
                 refuse_auth: bool = False, stall_after_store: bool = False, greet_delay: float = 0.0,
                 reply_delay: float = 0.0, later: Collection[str] = (), slow: Collection[str] = (),
                 greetings: Mapping[int, tuple[float, bytes]] = {}) -> None:
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.chunking = chunking
        self.refuse_auth = refuse_auth
        self.stall_after_store = stall_after_store  # store, then never answer (until the client leaves)
        self.greet_delay = greet_delay  # seconds before the 220
        self.reply_delay = reply_delay  # seconds between storing a message and its 250
        # Scripted, beside the random faults: ``later`` recipients get a 451 at their first RCPT; a
        # message to a ``slow`` one waits SLOW_REPLY seconds for its 250; the connection numbered n
        # (from 1) is greeted ``greetings[n] = (seconds, line)`` instead, and closed if it is no 220.
        self.later, self.slow, self.greetings = set(later), set(slow), dict(greetings)
        self.open_now = 0  # connections open now
        self.mails = 0  # MAIL commands received
        self.stored: Counter[tuple[str, str]] = Counter()
        self.connections = 0
        self.auth_attempts = 0
        self.host = HOST
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ChaosServer:
        self._thread.start()
        if not self._ready.wait(_TIMEOUT):
            raise RuntimeError("the chaos server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_TIMEOUT)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, HOST, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        sessions = asyncio.all_tasks(self._loop)  # (ended here, not left to the garbage collector)
        for task in sessions:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*sessions, return_exceptions=True))
        self._loop.close()

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        try:
            async with asyncio.timeout(_TIMEOUT * 6):
                greeting = self.greetings.get(self.connections, (self.greet_delay, b"220 chaos.test ESMTP\r\n"))
                await self._session(reader, writer, *greeting)
        except (_Cut, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.open_now -= 1
            writer.transport.abort()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                       greeting: bytes) -> None:
        faults = self.faults
        await asyncio.sleep(delay)
        writer.write(greeting)
        if not greeting.startswith(b"220"):
            await writer.drain()
            return
        sender: bytes | None = None
        rcpts: list[str] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb not in (b"QUIT", b"EHLO") and self._chance(faults.cut):
                raise _Cut
            if verb not in (b"QUIT", b"EHLO") and self._chance(faults.shutdown):
                writer.write(b"421 4.3.2 chaos: shutting down\r\n")
                await writer.drain()
                raise _Cut
            if verb == b"EHLO":
                extensions = [b"PIPELINING", b"ENHANCEDSTATUSCODES", b"AUTH PLAIN"]
                if self.chunking:
                    extensions.append(b"CHUNKING")
                writer.write(b"250-chaos.test\r\n" + b"".join(b"250-%s\r\n" % e for e in extensions[:-1])
                             + b"250 %s\r\n" % extensions[-1])
            elif verb == b"AUTH":
                self.auth_attempts += 1
                if self.refuse_auth:
                    writer.write(b"535 5.7.8 chaos: authentication credentials invalid\r\n")
                else:
                    writer.write(b"235 2.7.0 ok\r\n")
            elif verb == b"MAIL":
                self.mails += 1
                if self._chance(faults.transient):
                    writer.write(b"451 4.3.0 chaos: try MAIL again later\r\n")
                else:
                    sender, rcpts = line, []
                    writer.write(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                if sender is None:
                    writer.write(b"503 5.5.1 need MAIL\r\n")
                elif self._chance(faults.transient) or self._first_time_later(line):
                    writer.write(b"451 4.3.0 chaos: try this recipient later\r\n")
                elif self._chance(faults.permanent_rcpt):
                    writer.write(b"550 5.1.1 chaos: no such user\r\n")
                else:
                    match = _ADDRESS.search(line)
                    rcpts.append(match.group(1).decode() if match else "")
                    writer.write(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                if sender is None or not rcpts:
                    writer.write(b"503 5.5.1 no valid recipients\r\n")
                    continue
                writer.write(b"354 go on\r\n")
                await writer.drain()
                content = await self._read_data(reader)
                await self._end_of_content(writer, content, rcpts)
                sender, rcpts = None, []
            elif verb == b"BDAT":
                size, last = int(line.split()[1]), b"LAST" in line.upper()
                content = await reader.readexactly(size)
                if not last:
                    raise _Cut  # (the pools send one chunk per message here)
                if sender is None or not rcpts:
                    writer.write(b"503 5.5.1 no valid recipients\r\n")
                else:
                    await self._end_of_content(writer, content, rcpts)
                sender, rcpts = None, []
            elif verb == b"RSET":
                sender, rcpts = None, []
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"NOOP":
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"500 5.5.2 what\r\n")
            if not reader._buffer:  # type: ignore[attr-defined]  # answer a pipelined group in one write
                await writer.drain()

    def _first_time_later(self, line: bytes) -> bool:
        match = _ADDRESS.search(line)
        rcpt = match.group(1).decode() if match else ""
        if rcpt in self.later:
            self.later.discard(rcpt)  # (once)
            return True
        return False

    @staticmethod
    async def _read_data(reader: asyncio.StreamReader) -> bytes:
        lines: list[bytes] = []
        for _ in range(1 << 20):  # bounded
            line = await reader.readline()
            if not line:
                raise _Cut
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)
        raise _Cut

    async def _end_of_content(self, writer: asyncio.StreamWriter, content: bytes, rcpts: list[str]) -> None:
        faults = self.faults
        if self._chance(faults.transient):
            writer.write(b"451 4.3.0 chaos: content not taken, try later\r\n")
            return
        match = _SUBJECT.search(content)
        subject = match.group(1).decode() if match else "?"
        with self._lock:
            for rcpt in rcpts:
                self.stored[(subject, rcpt)] += 1
        if self._chance(faults.cut_after_store):
            raise _Cut
        await asyncio.sleep(SLOW_REPLY if self.slow.intersection(rcpts) else self.reply_delay)
        if self.stall_after_store:
            await asyncio.sleep(_TIMEOUT * 3)  # (bounded: the session's own timeout ends it)
            raise _Cut
        writer.write(b"250 2.0.0 chaos: stored\r\n")
