"""The ``S:``/``C:`` transcript: the RFC examples' notation, read and written, and matched against bytes.

Anyone can write a transcript by hand; ``parse_transcript`` reads it,
``to_text`` writes a trace's steps in it, and ``match_lines`` compares what a
client wrote with the lines it should have written (the scripted test server
and replay use it; neither needs the engine for that).  Its grammar, one line
each:

``S: text``  a server line; CRLF is added.  ``S: 250-...`` continues a reply.
``C: text``  a client line; CRLF is added (trailing blanks are not significant).
``S~ esc`` / ``C~ esc``  exact bytes written with the escapes ``\\\\ \\r \\n
\\t \\xNN``; no CRLF is added.  Used for lines that are not plain UTF-8 text,
that end in blanks, or the end of data that does not end in CRLF.
``S: <close>``  the server closes the connection (any ``S: <...>`` is a stage
direction as in the RFCs; those that mention "close" close, the others are
ignored).  ``C & S: ...`` lines are ignored too.
``# comment`` and blank lines are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from .trace import CLOSED_NOTE, MASK, TraceStep, TranscriptError

# -- escapes for the text form ------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_UNESCAPES = {"\\": b"\\", "r": b"\r", "n": b"\n", "t": b"\t"}
# Characters that editors or str.splitlines() treat as line breaks.
_BREAKS = frozenset("\x85\u2028\u2029")


def escape(data: bytes) -> str:
    """Bytes as text that ``unescape`` turns back into the same bytes."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or char in _BREAKS:
            # \xNN is one raw byte; a character beyond ASCII (U+0085 NEL) needs \uNNNN
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")
        else:
            out.append(char)
    if out and out[-1] in (" ", "\t"):
        out[-1] = f"\\x{ord(out[-1]):02x}"  # trailing blanks would not survive an editor
    return "".join(out)


def unescape(text: str) -> bytes:
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            out += char.encode("utf-8")
            index += 1
            continue
        kind = text[index + 1 : index + 2]
        if kind in _UNESCAPES:
            out += _UNESCAPES[kind]
            index += 2
        elif kind in ("x", "u"):
            width = 2 if kind == "x" else 4
            digits = text[index + 2 : index + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad escape {text[index : index + 2 + width]!r}")
            value = int(digits, 16)
            out += bytes([value]) if kind == "x" else chr(value).encode("utf-8")
            index += 2 + width
        else:
            raise ValueError(f"bad escape {text[index : index + 2]!r}")
    return bytes(out)


def _plain(body: bytes) -> str | None:
    """The line as plain transcript text, or None when it needs the escaped form."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text != text.rstrip(" \t") or any((ord(c) < 0x20 and c != "\t") or c == "\x7f" or c in _BREAKS
                                         for c in text):
        return None
    return text


def _split_lines(data: bytes) -> list[bytes]:
    """``data`` cut after each CRLF (the last piece may lack one)."""
    pieces = data.split(b"\r\n")
    lines = [piece + b"\r\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def render_lines(side: str, data: bytes) -> list[str]:
    """``data`` as ``S:``/``C:`` transcript lines (``side`` is "S" or "C")."""
    rendered = []
    for line in _split_lines(data):
        text = _plain(line[:-2]) if line.endswith(b"\r\n") else None
        if text is None:
            rendered.append(f"{side}~ {escape(line)}")
        else:
            rendered.append(f"{side}: {text}" if text else f"{side}:")
    return rendered


# -- the text form: a transcript ------------------------------------------------

@dataclass(frozen=True)
class TranscriptLine:
    """One ``S:`` or ``C:`` line: its side, the exact bytes it stands for, where it was written."""

    side: str  # "S" or "C"
    data: bytes
    lineno: int = 0
    text: str = ""
    close: bool = False  # ``S: <close>``: the server closes the connection

    @property
    def masked(self) -> bool:
        """The line stands for any credential (``<credentials>``)."""
        return MASK in self.data


@dataclass(frozen=True)
class ServerChunk:
    """What the server sends in one go: one reply (its lines), a broken line, or the close."""

    lines: tuple[TranscriptLine, ...]
    step: int  # 1-based count of server chunks in the transcript: "step k" everywhere

    @property
    def data(self) -> bytes:
        """The chunk's bytes on the wire."""
        return b"".join(line.data for line in self.lines)

    @property
    def close(self) -> bool:
        """The server closes the connection here (``S: <close>``)."""
        return any(line.close for line in self.lines)

    @property
    def lineno(self) -> int:
        """The transcript line the chunk starts on."""
        return self.lines[0].lineno if self.lines else 0


@dataclass(frozen=True)
class Exchange:
    """Server lines, then the client lines that answer them."""

    server: tuple[TranscriptLine, ...]
    client: tuple[TranscriptLine, ...]
    chunks: tuple[ServerChunk, ...] = ()

    @property
    def server_bytes(self) -> bytes:
        """What the server says in this exchange, as bytes on the wire."""
        return b"".join(line.data for line in self.server)

    @property
    def client_bytes(self) -> bytes:
        """What the client is expected to write in answer, as bytes."""
        return b"".join(line.data for line in self.client)


@dataclass(frozen=True)
class Transcript(Sequence[Exchange]):
    """An ordered list of exchanges, as parsed from ``S:``/``C:`` text."""

    exchanges: tuple[Exchange, ...] = field(default_factory=tuple)

    @overload
    def __getitem__(self, index: int) -> Exchange: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Exchange]: ...

    def __getitem__(self, index: int | slice) -> Exchange | Sequence[Exchange]:
        return self.exchanges[index]

    def __len__(self) -> int:
        return len(self.exchanges)

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.exchanges)

    @property
    def chunks(self) -> tuple[ServerChunk, ...]:
        """Every server chunk in order (``chunks[k - 1].step == k``)."""
        return tuple(chunk for exchange in self.exchanges for chunk in exchange.chunks)

    @property
    def server_bytes(self) -> bytes:
        """Everything the server says, as bytes on the wire."""
        return b"".join(exchange.server_bytes for exchange in self.exchanges)

    @property
    def client_bytes(self) -> bytes:
        """Everything the client is expected to write, as bytes."""
        return b"".join(exchange.client_bytes for exchange in self.exchanges)

    def excerpt(self, lineno: int, around: int = 2) -> str:
        """The transcript lines near line ``lineno``, numbered, that one marked ``>``: a failure's context.

        Lines come as written (from a parsed text), else rendered from their bytes.
        """
        lines = sorted({line.lineno: line for exchange in self.exchanges
                        for line in (*exchange.server, *exchange.client)}.items())
        if not lines:
            return "    (the transcript is empty)"
        index = next((i for i, (number, _) in enumerate(lines) if number >= lineno), len(lines) - 1)
        shown = []
        for number, line in lines[max(index - around, 0) : index + around + 1]:
            text = line.text.strip() or ("S: <close>" if line.close else " / ".join(render_lines(line.side, line.data)))
            shown.append(f"  {'>' if number == lineno else ' '} {number:4} | {text}")
        return "\n".join(shown)

    def to_text(self) -> str:
        """The transcript as ``S:``/``C:`` text (what ``parse_transcript`` reads)."""
        lines = []
        for exchange in self.exchanges:
            for line in (*exchange.server, *exchange.client):
                lines.extend(["S: <close>"] if line.close else render_lines(line.side, line.data))
        return "".join(line + "\n" for line in lines)


_DIRECTION = re.compile(r"<[^<>]*>\Z")
_STAGE = re.compile(r"(C\s*&\s*S|S\s*&\s*C)\s*:")


def _parse_line(raw: str, lineno: int) -> TranscriptLine | None:
    line = raw.lstrip(" \t")  # RFC examples are indented
    if not line.strip() or line.lstrip().startswith("#") or _STAGE.match(line):
        return None
    side, mark, rest = line[:1], line[1:2], line[2:]
    if side not in ("S", "C") or mark not in (":", "~"):
        raise TranscriptError(f"transcript line {lineno}: expected 'S:', 'C:', 'S~', 'C~' or '#', got {raw!r}")
    if mark == "~":
        try:
            data = unescape(rest[1:] if rest.startswith(" ") else rest)
        except ValueError as exc:
            raise TranscriptError(f"transcript line {lineno}: {exc}") from exc
        return TranscriptLine(side, data, lineno, raw)
    text = (rest[1:] if rest.startswith(" ") else rest).rstrip(" \t")
    if side == "S" and _DIRECTION.match(text):
        if "close" in text.lower():
            return TranscriptLine(side, b"", lineno, raw, close=True)
        return None
    return TranscriptLine(side, text.encode("utf-8") + b"\r\n", lineno, raw)


def _ends_reply(data: bytes) -> bool:
    """The chunk is complete: ends in CRLF and its last line is not an ``NNN-`` continuation."""
    if not data.endswith(b"\r\n"):
        return False
    last = data[:-2].rsplit(b"\r\n", 1)[-1]
    return not (len(last) >= 4 and last[:3].isdigit() and last[3:4] == b"-")


def _chunks(server: Sequence[TranscriptLine], first_step: int) -> tuple[ServerChunk, ...]:
    chunks: list[ServerChunk] = []
    pending: list[TranscriptLine] = []

    def flush() -> None:
        if pending:
            chunks.append(ServerChunk(tuple(pending), first_step + len(chunks)))
            pending.clear()

    for line in server:
        if line.close:
            flush()
            pending.append(line)
            flush()
            continue
        pending.append(line)
        if _ends_reply(b"".join(item.data for item in pending)):
            flush()
    flush()
    return tuple(chunks)


def parse_transcript(text: str) -> Transcript:
    """Read ``S:``/``C:`` text (see the module docstring) into a Transcript."""
    blocks: list[tuple[list[TranscriptLine], list[TranscriptLine]]] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = _parse_line(raw.rstrip("\r"), lineno)
        if line is None:
            continue
        if not blocks or (line.side == "S" and blocks[-1][1]):
            blocks.append(([], []))
        blocks[-1][0 if line.side == "S" else 1].append(line)
    exchanges = []
    step = 1
    for server, client in blocks:
        chunks = _chunks(server, step)
        step += len(chunks)
        exchanges.append(Exchange(tuple(server), tuple(client), chunks))
    return Transcript(tuple(exchanges))


def load_transcript(path: str | Path) -> Transcript:
    """Read a transcript file (``S:``/``C:`` lines)."""
    return parse_transcript(Path(path).read_text(encoding="utf-8"))


def to_text(steps: Iterable[TraceStep]) -> str:
    """The steps as ``S:``/``C:`` text; ``parse_transcript`` reads it back (notes become comments)."""
    lines: list[str] = []
    for step in steps:
        if step.reply is not None:
            lines.extend(render_lines("S", step.reply.to_bytes()))
        elif step.note == CLOSED_NOTE:
            lines.append("S: <close>")
        elif step.note:
            lines.append(f"# {step.note}")
        if step.sent:
            lines.extend(render_lines("C", step.sent))
    return "".join(line + "\n" for line in lines)


# -- matching client bytes against transcript lines --------------------------------

@dataclass(frozen=True)
class Match:
    """How far ``actual`` agrees with the expected lines.

    ``status`` is "ok" (all lines seen; ``consumed`` bytes of ``actual`` used),
    "partial" (agrees so far, more bytes are needed) or "mismatch" (line
    ``index`` disagrees; it starts at byte ``offset`` of ``actual``).
    """

    status: str
    index: int
    offset: int
    consumed: int = 0


def _mask_pattern(expected: bytes) -> re.Pattern[bytes]:
    parts = [re.escape(part) for part in expected.split(MASK)]
    return re.compile(b"[^\r\n]*".join(parts), re.DOTALL)


def match_lines(expected: Sequence[TranscriptLine], actual: bytes) -> Match:
    """Compare ``actual`` with the bytes of ``expected``, where ``<credentials>`` matches any credential."""
    offset = 0
    for index, line in enumerate(expected):
        rest = actual[offset:]
        if line.masked:
            end = rest.find(b"\r\n")
            if end < 0:
                prefix = line.data.split(MASK, 1)[0]
                agrees = prefix.startswith(rest) or rest.startswith(prefix)
                return Match("partial" if agrees else "mismatch", index, offset)
            candidate = rest[: end + 2]
            if not _mask_pattern(line.data).fullmatch(candidate):
                return Match("mismatch", index, offset)
            offset += len(candidate)
            continue
        if len(rest) < len(line.data):
            return Match("partial" if line.data.startswith(rest) else "mismatch", index, offset)
        if not rest.startswith(line.data):
            return Match("mismatch", index, offset)
        offset += len(line.data)
    return Match("ok", len(expected), offset, offset)


__all__ = [
    "Exchange",
    "Match",
    "ServerChunk",
    "Transcript",
    "TranscriptLine",
    "escape",
    "load_transcript",
    "match_lines",
    "parse_transcript",
    "render_lines",
    "to_text",
    "unescape",
]
