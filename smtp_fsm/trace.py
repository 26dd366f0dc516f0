"""The trace of a session: what each step received, did and became, and its JSON-lines form.

A step is one reply from the server (or one thing the caller did: queued
work, reported the TLS handshake, saw the connection close) with the state
before, the command the reply answered, the bytes the client sent in answer,
the state after, the events (as reprs and in words), and the protocol
table's row it took.  Credentials never enter a trace: AUTH data
is recorded as ``MASK``, a placeholder that replay accepts in place of any
credential.

JSON lines (``dump_jsonl`` / ``load_jsonl``) hold everything, one object per
step, for the lecture stepper and for tools: ``sent`` is text, and bytes that
are not UTF-8 are kept as lone surrogates (Python's ``surrogateescape``), so a
round trip gives the same bytes back.  The ``S:``/``C:`` text form of the same
steps is transcript.py's; the annotated terminal view is console.py's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .replies import Reply

#: Stands for credentials in traces, transcripts and logs.
MASK = b"<credentials>"

#: The note the engine gives the step where the server closed the connection.
CLOSED_NOTE = "connection closed"


@dataclass(frozen=True)
class TraceStep:
    state_before: str
    reply: Reply | None
    state_after: str
    sent: bytes
    events: tuple[str, ...]
    note: str = ""
    #: The protocol table's rows the step took, by index (``protocol.TRANSITIONS[i]``), in order:
    #: a recorded reply's row, or the row its trigger fired.  None when the trace did not record
    #: them (a hand-written transcript, an older trace file).
    rows: tuple[int, ...] | None = None
    #: The command the step's reply answered, as it went on the wire ("RCPT TO:<bob@example.org>",
    #: credentials masked): with PIPELINING the reply to a command can come several commands later.
    answers: str = ""
    #: ``events`` in words, for people ("message 1 delivered to bob@example.org (250 2.0.0 queued)").
    words: tuple[str, ...] = ()


class TranscriptError(ValueError):
    """A transcript or a JSON-lines trace that cannot be read; names the line."""


# -- what the engine records ---------------------------------------------------

#: An AUTH command's initial response (RFC 4954 §4): everything after the mechanism's name.
_AUTH_ARGUMENT = re.compile(rb"^(AUTH [A-Za-z0-9_-]+ )[^\r\n]+", re.MULTILINE | re.IGNORECASE)


def hide_credentials(data: bytes, sasl_responses: bool) -> bytes:
    """``data`` with AUTH initial responses replaced by ``MASK`` -- and every line but the cancelling
    ``*`` too when ``sasl_responses`` (the lines answer 334 challenges)."""
    if sasl_responses:
        return b"".join(MASK + b"\r\n" if line.endswith(b"\r\n") and line != b"*\r\n" else line
                        for line in data.splitlines(keepends=True))
    return _AUTH_ARGUMENT.sub(lambda m: m.group(1) + MASK, data)


def describe(item: object) -> str:
    """How a trace names an event (its repr) or an error ("Name: message")."""
    return f"{type(item).__name__}: {item}" if isinstance(item, BaseException) else repr(item)


# -- JSON lines ---------------------------------------------------------------

def step_to_dict(step: TraceStep) -> dict[str, Any]:
    """One step as a JSON-ready dict (``sent`` as text, see the module docstring)."""
    reply = None if step.reply is None else {"code": step.reply.code, "lines": list(step.reply.lines)}
    return {
        "state_before": step.state_before,
        "reply": reply,
        "state_after": step.state_after,
        "sent": step.sent.decode("utf-8", "surrogateescape"),
        "events": list(step.events),
        "note": step.note,
        "rows": None if step.rows is None else list(step.rows),
        "answers": step.answers,
        "words": list(step.words),
    }


def step_from_dict(data: dict[str, Any]) -> TraceStep:
    reply_data = data.get("reply")
    reply = None if reply_data is None else Reply(int(reply_data["code"]), tuple(str(x) for x in reply_data["lines"]))
    return TraceStep(
        state_before=str(data["state_before"]),
        reply=reply,
        state_after=str(data["state_after"]),
        sent=str(data.get("sent", "")).encode("utf-8", "surrogateescape"),
        events=tuple(str(x) for x in data.get("events", ())),
        note=str(data.get("note", "")),
        rows=None if data.get("rows") is None else tuple(int(x) for x in data["rows"]),
        answers=str(data.get("answers", "")),
        words=tuple(str(x) for x in data.get("words", ())),
    )


def _json_line(step: TraceStep) -> str:
    record = step_to_dict(step)
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (bytes that were not UTF-8) cannot be written raw: \u-escape this line.
        text = json.dumps(record)
    return text


def dump_jsonl(steps: Iterable[TraceStep], fp_or_path: str | Path | IO[str]) -> None:
    """Write the steps as JSON lines to a path or an open text file."""
    lines = "".join(_json_line(step) + "\n" for step in steps)
    if isinstance(fp_or_path, (str, Path)):
        Path(fp_or_path).write_text(lines, encoding="utf-8")
    else:
        fp_or_path.write(lines)


def load_jsonl(fp_or_path: str | Path | IO[str]) -> list[TraceStep]:
    """Read steps written by ``dump_jsonl`` (blank lines are skipped)."""
    text = Path(fp_or_path).read_text(encoding="utf-8") if isinstance(fp_or_path, (str, Path)) else fp_or_path.read()
    steps = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            steps.append(step_from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise TranscriptError(f"trace line {number}: {exc}") from exc
    return steps




__all__ = [
    "CLOSED_NOTE",
    "MASK",
    "TraceStep",
    "TranscriptError",
    "describe",
    "dump_jsonl",
    "hide_credentials",
    "load_jsonl",
    "step_from_dict",
    "step_to_dict",
]
