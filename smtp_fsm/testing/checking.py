"""Checking what a session writes against a transcript, step by step: shared by ``replay`` and the stepper.

A ``TranscriptCursor`` walks a transcript's server chunks.  Each ``feed_next``
feeds one chunk to a session (through the stepper's pump) and compares what the
session wrote with the client lines of that exchange; a difference raises
``ReplayMismatch``, an ``AssertionError`` whose message names the transcript
line, the state, the expected and the written bytes, and shows the transcript
lines around it.  Comparison is strict -- the EHLO name included -- unless the
caller names what to ignore (``Ignore``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..protocol import table
from ..trace import hide_credentials as trace_hide
from ..transcript import Exchange, Match, ServerChunk, Transcript, TranscriptLine, match_lines

if TYPE_CHECKING:
    from .stepping import _Pump

#: What ``ignore=`` takes besides header names: the name said in EHLO, HELO or LHLO.
EHLO_NAME = "ehlo"
_IGNORED = b"<ignored>"
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 §3.6.8: printable ASCII but ":"


class Ignore:
    """What a comparison leaves out: ``"ehlo"`` (the EHLO/HELO/LHLO argument) and header fields by name
    (``"Date"``, ``"Message-ID"``: their values, folded lines included), case-insensitively.  With
    header fields ignored, the size in ``BDAT <size>`` is too (their values change it).

    Both sides are rewritten the same way before they are compared (``<ignored>`` for each value),
    so a mismatch elsewhere on those lines is still found.  A header name also matches a body line
    that starts with it: both sides again, so that only weakens the check of that line.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        if isinstance(names, str):
            raise TypeError(f"ignore takes a collection of names, not the string {names!r} (write ({names!r},))")
        self.names = tuple(dict.fromkeys(names))
        patterns, fields = [], []
        for name in self.names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"ignore takes names (str), not {name!r}")
            if name.lower() == EHLO_NAME:
                patterns.append(rb"(?P<verb>EHLO|HELO|LHLO) [^\r\n]*\r\n")
            elif _FIELD_NAME.match(name):
                fields.append(re.escape(name.encode("ascii")))
            else:
                raise ValueError(f"ignore takes {EHLO_NAME!r} or header field names, not {name!r}")
        if fields:  # a field's value, and its folded lines; and BDAT's size, which such a value changes
            patterns.append(rb"(?P<field>" + rb"|".join(fields) + rb"):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
            patterns.append(rb"(?P<bdat>BDAT) [0-9]+(?P<last> LAST)?\r\n")
        self._pattern = (re.compile(rb"^(?:" + rb"|".join(patterns) + rb")", re.MULTILINE | re.IGNORECASE)
                         if patterns else None)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def apply(self, data: bytes) -> bytes:
        """``data`` with each ignored value replaced by ``<ignored>`` (complete lines only)."""
        if self._pattern is None:
            return data
        return self._pattern.sub(_replacement, data)

    def lines(self, lines: tuple[TranscriptLine, ...]) -> tuple[TranscriptLine, ...]:
        """Transcript lines as compared: each one rewritten alone."""
        if self._pattern is None:
            return lines
        kept: list[TranscriptLine] = []
        folded = False  # the line before was an ignored field: its folded lines go with it
        for line in lines:
            if folded and line.data[:1] in (b" ", b"\t"):
                continue
            data = self.apply(line.data)
            folded = data != line.data and data.endswith(b": " + _IGNORED + b"\r\n")
            kept.append(TranscriptLine(line.side, data, line.lineno, line.text, line.close))
        return tuple(kept)


def _replacement(found: re.Match[bytes]) -> bytes:
    groups = found.groupdict()
    if groups.get("verb"):
        return groups["verb"] + b" " + _IGNORED + b"\r\n"
    if groups.get("bdat"):
        return groups["bdat"] + b" " + _IGNORED + (groups["last"] or b"") + b"\r\n"
    return groups["field"] + b": " + _IGNORED + b"\r\n"


def hide_credentials(data: bytes, state: str) -> bytes:
    """``data`` as a trace would show it, written in ``state`` (the AUTH states answer challenges)."""
    return trace_hide(data, state in (table.AUTH, table.AUTH_RESPONSE))


def _lines_of(data: bytes, limit: int = 8) -> str:
    pieces = data.split(b"\r\n")
    lines = [repr(piece + b"\r\n") for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(repr(pieces[-1]))
    if not lines:
        return "    (nothing)"
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... {len(lines) - limit} more line(s)")
    return "\n".join("    " + line for line in shown)


class ReplayMismatch(AssertionError):
    """The engine did not write what the transcript says.

    ``step`` is the 1-based server step after which it happened (0: before
    any reply), ``lineno`` the transcript line, ``state`` the session's state,
    ``expected`` and ``actual`` the client bytes from the first difference,
    ``context`` the transcript lines around ``lineno``.
    """

    def __init__(self, reason: str, step: int, lineno: int, state: str, expected: bytes, actual: bytes,
                 context: str = "") -> None:
        self.step = step
        self.lineno = lineno
        self.state = state
        self.expected = expected
        self.actual = actual
        self.context = context
        where = f"step {step}" + (f" (transcript line {lineno})" if lineno else "")
        text = f"{where}, state {state!r}: {reason}\n  expected:\n{_lines_of(expected)}\n  actual:\n{_lines_of(actual)}"
        super().__init__(text + (f"\n  transcript:\n{context}" if context else ""))


class TranscriptCursor:
    """A transcript's server chunks in order, fed one at a time, each checked against the client lines."""

    def __init__(self, transcript: Transcript, ignore: Ignore) -> None:
        self.transcript = transcript
        self.ignore = ignore
        self._chunks: list[tuple[Exchange, ServerChunk]] = [
            (exchange, chunk) for exchange in transcript for chunk in exchange.chunks]
        self._index = 0
        self._expected: dict[int, tuple[TranscriptLine, ...]] = {}  # per exchange, as compared
        self.pending = b""  # written since the current exchange's client lines began
        self.written: list[bytes] = []  # what each finished exchange's client side wrote
        self.step = 0
        self.lineno = 0
        self.started = False
        self._open: Exchange | None = None  # the exchange whose client lines are being written
        self._state_before = ""  # the session's state when its last server chunk was fed

    @property
    def done(self) -> bool:
        """Every server chunk has been fed."""
        return self._index >= len(self._chunks)

    @property
    def remaining(self) -> int:
        """Server chunks not fed yet."""
        return len(self._chunks) - self._index

    def start(self, pump: _Pump) -> bytes:
        """Before the first reply: what queued work made the session write (nothing, by the protocol)."""
        self.started = True
        out = pump.drain()
        self.pending += out
        return out

    def collect(self, pump: _Pump) -> bytes:
        """A turn without a reply (work queued in state ready): its bytes belong to the exchange of the
        last reply (what the client writes before the server speaks again), checked as they come."""
        __tracebackhide__ = True
        out = pump.drain()
        self.pending += out
        if self._open is not None:
            self._check(self._open, pump.session.state, complete=False)
        return out

    def feed_next(self, pump: _Pump) -> bytes:
        """Feed the next server chunk; check what the session wrote; return those bytes.

        An exchange's client lines are complete when the server speaks again (or the transcript
        ends): "wrote less" is found then; "wrote something else" as soon as it is written.
        """
        __tracebackhide__ = True  # a mismatch is the client's, not this method's
        exchange, chunk = self._chunks[self._index]
        session = pump.session
        if self._open is not None and self._open is not exchange:
            self._check(self._open, session.state, complete=True)
        self._index += 1
        self.step, self.lineno, self._state_before = chunk.step, chunk.lineno, session.state
        if session.state in table.FINAL_STATES and not chunk.close:
            raise self._mismatch(f"the session already ended ({pump.error or 'closed'}) but the transcript goes "
                                 f"on with {chunk.data!r}", chunk.lineno, session.state, exchange.client_bytes,
                                 self.pending)
        out = pump.feed(b"" if chunk.close else chunk.data)
        self.pending += out
        self._open = exchange
        self._check(exchange, session.state, complete=self.done)
        return out

    def _check(self, exchange: Exchange, state: str, *, complete: bool) -> None:
        __tracebackhide__ = True
        expected = self._expected_lines(exchange)
        written = self.ignore.apply(self.pending)
        found = match_lines(expected, written)
        if found.status == "mismatch":
            self._wrote_else(found, expected, written, self._state_before, state)
        if complete:
            self._finish(found, expected, written, self._state_before, state)
            self._open = None

    def _expected_lines(self, exchange: Exchange) -> tuple[TranscriptLine, ...]:
        key = id(exchange)
        if key not in self._expected:
            self._expected[key] = self.ignore.lines(exchange.client)
        return self._expected[key]

    def _finish(self, found: Match, expected: tuple[TranscriptLine, ...], written: bytes, state_before: str,
                state: str) -> None:
        __tracebackhide__ = True
        if found.status != "ok":
            line = expected[found.index]
            raise self._mismatch(f"the client wrote less than the transcript shows (transcript line "
                                 f"{line.lineno} not written)", line.lineno, state,
                                 b"".join(x.data for x in expected[found.index :]),
                                 hide_credentials(written[found.offset :], state_before))
        if len(written) > found.consumed:
            raise self._mismatch("the client wrote more than the transcript shows", self.lineno, state, b"",
                                 hide_credentials(written[found.consumed :], state_before))
        self.written.append(self.pending)
        self.pending = b""

    def _wrote_else(self, found: Match, expected: tuple[TranscriptLine, ...], written: bytes, state_before: str,
                    state: str) -> None:
        __tracebackhide__ = True
        line = expected[found.index]
        raise self._mismatch(f"the client wrote something else than transcript line {line.lineno} (state before "
                             f"the reply: {state_before!r})", line.lineno, state,
                             b"".join(x.data for x in expected[found.index :]),
                             hide_credentials(written[found.offset :], state_before))

    def _mismatch(self, reason: str, lineno: int, state: str, expected: bytes, actual: bytes) -> ReplayMismatch:
        return ReplayMismatch(reason, self.step, self.lineno, state, expected, actual,
                              self.transcript.excerpt(lineno) if lineno else "")


__all__ = ["EHLO_NAME", "Ignore", "ReplayMismatch", "TranscriptCursor", "hide_credentials"]
