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
from dataclasses import dataclass, field

from .errors import RemoteProtocolError

#: RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; accept 4x that.
MAX_LINE = 2048
#: No real EHLO reply comes near this many lines.
MAX_LINES = 128

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_CODE_FIRST = b"2345"
_CODE_SECOND = b"012345"
_DIGITS = b"0123456789"


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete server reply."""

    code: int
    lines: tuple[str, ...] = field(default=("",))

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
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not try again as is."""
        return self.code >= 500

    def text_without_code(self) -> str:
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


class ReplyParser:
    """Incremental, bounded reply parser.  ``feed`` returns the completed replies."""

    __slots__ = ("_buffer", "_code", "_lines")

    def __init__(self) -> None:
        self._buffer = b""
        self._code = 0
        self._lines: list[str] = []

    @property
    def buffered(self) -> int:
        """How many bytes are held: an unfinished line plus the lines of an unfinished reply."""
        return len(self._buffer) + sum(len(line) for line in self._lines)

    @property
    def has_partial(self) -> bool:
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        buffer = self._buffer + data if self._buffer else data
        replies: list[Reply] = []
        start = 0
        while True:
            end = buffer.find(b"\r\n", start)
            if end < 0:
                break
            if end - start > MAX_LINE:
                raise RemoteProtocolError(f"reply line longer than {MAX_LINE} octets", buffer[start : start + 80])
            reply = self._line(buffer, start, end)
            if reply is not None:
                replies.append(reply)
            start = end + 2
        rest = buffer[start:]
        if len(rest) > MAX_LINE:
            raise RemoteProtocolError(f"reply line longer than {MAX_LINE} octets", rest[:80])
        if b"\n" in rest:
            # A bare LF with no CR before it: RFC 5321 §2.3.8 allows only CRLF.
            raise RemoteProtocolError("reply line ends in a bare LF", rest[:80])
        self._buffer = rest
        return replies

    def _line(self, buffer: bytes, start: int, end: int) -> Reply | None:
        line = buffer[start:end]
        if (
            len(line) < 3
            or line[0] not in _CODE_FIRST
            or line[1] not in _CODE_SECOND
            or line[2] not in _DIGITS
            or (len(line) > 3 and line[3] not in b" -")
        ):
            raise RemoteProtocolError("malformed reply line", line)
        if b"\r" in line or b"\n" in line:
            raise RemoteProtocolError("bare CR or LF inside a reply line", line)
        code = int(line[:3])
        if self._lines and code != self._code:
            raise RemoteProtocolError("reply code changed inside a multi-line reply", line)
        text = line[4:].decode("utf-8", "replace")
        if len(line) > 3 and line[3] == 0x2D:  # "-": more lines follow
            if len(self._lines) >= MAX_LINES:
                raise RemoteProtocolError(f"reply has more than {MAX_LINES} lines", line)
            self._code = code
            self._lines.append(text)
            return None
        if self._lines:
            self._lines.append(text)
            lines = tuple(self._lines)
            self._lines = []
            return Reply(code, lines)
        return Reply(code, (text,))
