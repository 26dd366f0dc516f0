"""Server replies: the immutable :class:`Reply` and the bounded, incremental parser.

RFC 5321 §4.2: a reply is one or more lines ``NNN-text`` ending with a line
``NNN text`` (or a bare ``NNN``), every line ending in CRLF and carrying the
same three-digit code.  The parser is fed whatever bytes arrived, in any
fragmentation, and returns the replies that are complete.  It never holds more
than ``MAX_LINE`` bytes of an unfinished line nor more than ``MAX_LINES`` lines
of an unfinished reply, so memory stays bounded whatever a server sends.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import RemoteProtocolError

#: RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; accept 4x that.
MAX_LINE = 2048
#: No real EHLO reply comes near this many lines.
MAX_LINES = 128

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
#: Every reply code a client acts on, and its value.  RFC 5321 §4.2 defines 2-5, then 0-5,
#: then a digit; §4.2 (and §4.3.1) also asks a client to act on a code it does not know by
#: its first digit, so a "571" is a 5xx refusal, not a broken reply.
_CODES = {b"%d" % code: code for code in range(200, 600)}
_SEPARATORS = (b" ", b"-", b"")

#: Single-line replies already parsed and checked ("250 OK", "354 go ahead"): servers
#: repeat a handful of them, and a Reply is immutable, so every session can share them.
_SEEN: dict[bytes, Reply] = {}
_SEEN_MAX = 512
_SEEN_LINE = 80  # long lines are rarely repeated; the cache stays under 64 KiB


class Reply(NamedTuple):
    """One complete server reply (immutable; a NamedTuple because the parser makes one per
    reply on the hot path, and a frozen dataclass costs three times as much to build)."""

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def text(self) -> str:
        """The reply's lines joined by newlines, without the codes."""
        return "\n".join(self.lines)

    @property
    def enhanced_code(self) -> str | None:
        """The RFC 3463 enhanced status code (``"5.1.1"``) that starts the text, if any.

        It counts only when its class agrees with the reply code's first digit
        (RFC 2034 §4), so a 250 reply whose text happens to start with "5.0"
        is not misread.
        """
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        if match is None or int(match.group(1)) != self.code // 100:
            return None
        return match.group(0)

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not try again as is."""
        return self.code >= 500

    def text_without_code(self) -> str:
        """The lines joined by spaces, empty lines left out."""
        return " ".join(line for line in self.lines if line)

    def to_bytes(self) -> bytes:
        """The reply as it appears on the wire (used by transcripts and scripted servers)."""
        last = len(self.lines) - 1
        out = []
        for index, line in enumerate(self.lines):
            sep = " " if index == last else "-"
            out.append(f"{self.code}{sep}{line}\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        return f"{self.code} {self.text_without_code()}".rstrip()

    def __repr__(self) -> str:
        return f"Reply(code={self.code!r}, lines={self.lines!r})"


def _fault(line: bytes, complete: bool, code: bytes | None) -> tuple[int, str] | None:
    """Where ``line`` first goes wrong, and why; None while it can still become a valid reply line.

    Errors are placed at the first offending byte, so whether a bad line arrives whole or
    a byte at a time, the same error with the same excerpt is reported (feeding is
    split-independent, bad streams included).  ``complete`` is False for a line whose CRLF
    has not arrived: a CR at its very end may be the start of that CRLF.  ``code`` is the
    code of the multi-line reply this line continues, if any.
    """
    body = line if complete or not line.endswith(b"\r") else line[:-1]
    candidates: list[tuple[int, str]] = []
    for index, byte in enumerate(body[:4]):
        valid = (byte in b"2345" if index == 0 else byte in b"0123456789" if index < 3 else byte in b" -")
        if not valid:
            candidates.append((index, "malformed reply line"))
            break
    else:
        if complete and len(body) < 3:
            candidates.append((len(body), "malformed reply line"))
    if code is not None:
        for index, byte in enumerate(body[:3]):
            if byte != code[index]:
                candidates.append((index, "reply code changed inside a multi-line reply"))
                break
    for bad in (body.find(b"\r"), body.find(b"\n")):
        if bad >= 0:
            candidates.append((bad, "bare CR or LF inside a reply line"))
    if len(body) > MAX_LINE:
        candidates.append((MAX_LINE, f"reply line longer than {MAX_LINE} octets"))
    return min(candidates, key=lambda found: found[0]) if candidates else None


def _error(line: bytes, fault: tuple[int, str]) -> RemoteProtocolError:
    position, reason = fault
    # The excerpt ends at the offending byte: the same however the line was split.
    return RemoteProtocolError(reason, line[: min(position + 1, 80)])


class ReplyParser:
    """Incremental, bounded reply parser.

    ``feed`` returns the replies completed by the bytes given.  When the bytes go
    wrong, the replies completed before the bad byte are still returned, and ``error``
    holds the :class:`RemoteProtocolError`; the parser then takes nothing more.
    """

    __slots__ = ("_buffer", "_code", "_lines", "error")

    def __init__(self) -> None:
        self._buffer = b""
        self._code = 0
        self._lines: list[str] = []
        self.error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many bytes are held: an unfinished line plus the lines of an unfinished reply."""
        return len(self._buffer) + sum(len(line) for line in self._lines)

    @property
    def has_partial(self) -> bool:
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        if self.error is not None:
            return []
        buffer = self._buffer + data if self._buffer else data
        lines = buffer.split(b"\r\n")
        rest = lines.pop()  # the unfinished line (b"" when the data ended with CRLF)
        replies: list[Reply] = []
        for line in lines:
            if not self._lines:
                cached = _SEEN.get(line)
                if cached is not None:
                    replies.append(cached)
                    continue
            code = _CODES.get(line[:3])
            separator = line[3:4]
            if (code is None or separator not in _SEPARATORS or len(line) > MAX_LINE or b"\r" in line
                    or b"\n" in line or (self._lines and code != self._code)):
                return self._fail(replies, line, complete=True)
            text = line[4:].decode("utf-8", "replace")
            if separator == b"-":  # more lines follow
                if len(self._lines) >= MAX_LINES - 1:  # room is kept for the final line
                    self.error = RemoteProtocolError(f"reply has more than {MAX_LINES} lines", line[:80])
                    return replies
                self._code = code
                self._lines.append(text)
            elif self._lines:
                self._lines.append(text)
                replies.append(Reply(code, tuple(self._lines)))
                self._lines = []
            else:
                reply = Reply(code, (text,))
                replies.append(reply)
                if len(line) <= _SEEN_LINE and len(_SEEN) < _SEEN_MAX:
                    _SEEN[line] = reply
        if rest and _fault(rest, False, self._continued()) is not None:
            return self._fail(replies, rest, complete=False)
        self._buffer = rest
        return replies

    def _continued(self) -> bytes | None:
        return b"%d" % self._code if self._lines else None

    def _fail(self, replies: list[Reply], line: bytes, complete: bool) -> list[Reply]:
        fault = _fault(line, complete, self._continued())
        assert fault is not None
        self.error = _error(line, fault)
        self._buffer = b""
        self._lines = []
        return replies
