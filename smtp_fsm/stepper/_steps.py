"""Each trace step in words: the row that fired, the lines on the wire, what each reply answers.

Everything here is read from the trace (its rows, ``answers``, ``words``) and
from the table; nothing is inferred from the bytes but base64, which the AUTH
exchange is made of and which a lecture wants decoded.  Credentials are never
in a trace: ``demo_credentials`` (``smtp-fsm demo`` only) puts the demo's
throw-away ones back, computed by the same SASL mechanism functions the
engine uses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..auth import MECHANISMS, Credentials
from ..diagram import protocol_text
from ..protocol import table
from ..protocol.rules import challenge
from ..trace import CLOSED_NOTE, MASK, TraceStep

#: Lines of a step shown before the rest folds away (a message's content: expandable in full).
SHOWN_LINES = 8
_MASK_TEXT = MASK.decode()
_AUTH_STATES = (table.AUTH, table.AUTH_RESPONSE)
_SPECS = {spec.name: spec for spec in table.STATES}


@dataclass(frozen=True)
class Line:
    """One line of a step: ``kind`` is S, C, answers, decoded, note or event (the page's CSS classes)."""

    kind: str
    text: str


@dataclass(frozen=True)
class StepText:
    number: int
    step: TraceStep
    rows: tuple[table.TransitionSpec, ...]  # the rows that fired, as the trace recorded them
    lines: tuple[Line, ...]
    folded: tuple[str, ...]  # the client's lines past SHOWN_LINES: the message content, in full
    explain: str


def recorded_rows(step: TraceStep) -> tuple[table.TransitionSpec, ...]:
    """The table rows the step recorded, or () when it recorded none this table has."""
    if not step.rows or not all(0 <= index < len(table.TRANSITIONS) for index in step.rows):
        return ()
    return tuple(table.TRANSITIONS[index] for index in step.rows)


def row_words(row: table.TransitionSpec) -> str:
    """A row as the page lists it: its number and its words."""
    return f"row {row.index}: {protocol_text(row)}"


def row_code(row: table.TransitionSpec) -> str:
    """A row as the table writes it: trigger, label, conditions."""
    conditions = f" [{', '.join(row.condition_names)}]" if row.condition_names else ""
    return f"{row.trigger}: {row.label or '(always)'}{conditions}"


def _decoded(text: str) -> str | None:
    """What a base64 SASL line says (NUL shown as \\0), or None when it is not base64."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    shown = data.decode("utf-8", "backslashreplace").replace("\0", "\\0")
    return f"base64 of “{shown}”" if data else None


class _Sasl:
    """The demo's credentials, answered by the engine's own mechanism functions as each step needs."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.mechanism = ""
        self.responses = 0
        self.sent = ""  # the last SASL line put back: what the next reply answers

    def command(self, line: str) -> str:
        """The AUTH command with its initial response put back."""
        words = line.split(" ")
        self.mechanism, self.responses = (words[1].upper() if len(words) > 1 else ""), 0
        if self.credentials is None or len(words) < 3 or words[2] != _MASK_TEXT:
            return line
        mech = MECHANISMS.get(self.mechanism)
        initial = mech.initial(self.credentials) if mech else None
        if initial is None:
            return line
        self.sent = f"{words[0]} {words[1]} {base64.b64encode(initial).decode()}"
        return self.sent

    def response(self, challenge: str) -> str | None:
        """The answer to a 334 challenge, base64 as sent, or None when it cannot be worked out."""
        mech = MECHANISMS.get(self.mechanism)
        if self.credentials is None or mech is None or mech.respond is None:
            return None
        try:
            decoded = base64.b64decode(challenge.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        answer = mech.respond(self.credentials, decoded, self.responses)
        self.responses += 1
        self.sent = base64.b64encode(answer).decode()
        return self.sent

    def answered(self, answers: str) -> str:
        """What a reply answers, with the line put back when it was a masked SASL line."""
        if self.credentials is not None and self.sent and _MASK_TEXT in answers:
            return self.sent
        return answers


def _server_lines(step: TraceStep, rows: Sequence[table.TransitionSpec], sasl: _Sasl) -> Iterator[Line]:
    if step.reply is None:
        if step.note == CLOSED_NOTE:
            yield Line("S", "S: (closes the connection)")
        elif step.note:
            yield Line("note", f"({step.note})")
        return
    wire = step.reply.to_bytes().decode("utf-8", "replace")
    for line in wire.split("\r\n"):
        if line:
            yield Line("S", f"S: {line}")
    if any(challenge in row.conditions for row in rows):  # the table says it is a SASL challenge
        said = _decoded(step.reply.lines[0]) if step.reply.lines else None
        if said:
            yield Line("decoded", f"   = {said}")
    if step.answers:
        answers = sasl.answered(step.answers)
        said = answers if answers.startswith("(") else f"C: {answers}"  # (the greeting: no command)
        yield Line("answers", f"↳ answers {said}")


def _client_lines(step: TraceStep, sasl: _Sasl) -> tuple[list[Line], list[str]]:
    text = step.sent.decode("utf-8", "replace")
    sent = text.split("\r\n")
    if sent and sent[-1] == "":
        sent.pop()
    lines: list[Line] = []
    for number, line in enumerate(sent):
        if number >= SHOWN_LINES:
            return lines, [f"C: {rest}" for rest in sent[number:]]
        if step.state_after in _AUTH_STATES and line.upper().startswith("AUTH "):
            line = sasl.command(line)
        elif step.state_after == table.AUTH_RESPONSE and line == _MASK_TEXT and step.reply is not None:
            line = sasl.response(step.reply.lines[0] if step.reply.lines else "") or line
        lines.append(Line("C", f"C: {line}"))
        sasl_line = line.split(" ")[2] if line.upper().startswith("AUTH ") and line.count(" ") >= 2 else None
        if step.state_after == table.AUTH_RESPONSE and not line.upper().startswith("AUTH "):
            sasl_line = line
        if sasl_line == _MASK_TEXT:
            lines.append(Line("note", "   (credentials: a trace never records them)"))
        elif sasl_line is not None and (said := _decoded(sasl_line)):
            lines.append(Line("decoded", f"   = {said}"))
    return lines, []


def explain(step: TraceStep, rows: Sequence[table.TransitionSpec]) -> str:
    """The step in one sentence: the row that fired (from the trace), and where the session is now."""
    state = _SPECS.get(step.state_after)
    now = f"{step.state_after}: {state.description} ({state.rfc})" if state else step.state_after
    if not rows:
        return f"{step.state_before} → {step.state_after} (no table row recorded). Now {now}"
    fired = "; then ".join(row_words(row) for row in rows)
    return f"{fired}: {step.state_before} → {step.state_after}. Now {now}"


def step_texts(steps: Sequence[TraceStep], demo_credentials: Credentials | None = None) -> list[StepText]:
    """Every step in words, in order."""
    sasl = _Sasl(demo_credentials)
    texts = []
    for number, step in enumerate(steps, start=1):
        rows = recorded_rows(step)
        server = list(_server_lines(step, rows, sasl))  # (first: the reply answers what the step before sent)
        client, folded = _client_lines(step, sasl)
        events = step.words or step.events  # (a trace from before words were recorded: its reprs)
        lines = [*server, *client, *(Line("event", f"→ {event}") for event in events)]
        texts.append(StepText(number, step, rows, tuple(lines), tuple(folded), explain(step, rows)))
    return texts
