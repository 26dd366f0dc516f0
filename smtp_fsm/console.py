"""A trace as annotated terminal text: the transcript with the state beside each line (``--trace``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .trace import CLOSED_NOTE, TraceStep
from .transcript import render_lines

_RESET = "\x1b[0m"
_COLOURS = {"state": "\x1b[36m", "S": "\x1b[32m", "C": "\x1b[33m", "event": "\x1b[35m", "error": "\x1b[31m",
            "note": "\x1b[2m"}
_MAX_EVENT = 110
#: An error among the events: "error (Name): ..." in words, "Name: message" as a repr ("Name(...)" is an event).
_ERROR_EVENT = re.compile(r"error \(|\w+: ")


def _short_event(event: str) -> str:
    return event if len(event) <= _MAX_EVENT else event[: _MAX_EVENT - 3] + "..."


def annotated_text(steps: Sequence[TraceStep], color: bool = False, max_lines: int | None = None) -> str:
    """The transcript with the state beside each line: ``state  S: ...`` and ``-> state  C: ...``.

    Server lines carry the state the reply arrived in, client lines the state
    the session moved to.  Events follow as ``*`` lines, in words.  ``color`` adds ANSI
    colours; without it the text reads the same.  ``max_lines`` elides long
    client data (message content) after that many lines per step.
    """

    def paint(kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}{_RESET}" if color else text

    width = max([len(s.state_before) for s in steps] + [len(s.state_after) + 3 for s in steps] + [8])
    out: list[str] = []

    def emit(label: str, kind: str, text: str) -> None:
        out.append(f"{paint('state', label.ljust(width))}  {paint(kind, text)}".rstrip())

    for step in steps:
        if step.reply is not None:
            for line in render_lines("S", step.reply.to_bytes()):
                emit(step.state_before, "S", line)
        elif step.note == CLOSED_NOTE:
            emit(step.state_before, "S", "S: <close>")
        elif step.note:
            emit(step.state_before, "note", f"# {step.note}")
        moved = f"-> {step.state_after}"
        client = render_lines("C", step.sent) if step.sent else []
        if max_lines is not None and len(client) > max_lines + 1:
            hidden = len(client) - max_lines
            client = [*client[: max_lines - 1], f"C: ... ({hidden} more lines) ...", client[-1]]
        for line in client:
            emit(moved, "C", line)
        for event in step.words or step.events:  # (in words; a trace from before they were recorded: reprs)
            kind = "error" if _ERROR_EVENT.match(event) else "event"
            emit(moved, kind, f"* {_short_event(event)}")
        if not client and not step.events and step.state_after != step.state_before:
            emit(moved, "note", "")
    return "".join(line + "\n" for line in out)
