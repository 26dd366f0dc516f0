"""The session's model with a trace: every step recorded as a ``TraceStep`` (``trace=True``).

A subclass, so that a session without a trace pays nothing for it: only this
class remembers each command line in flight (to say which command a
pipelined reply answers) and puts events into words.
"""

from __future__ import annotations

from collections.abc import Callable

from ._model import SessionModel
from .errors import SMTPError
from .events import Authenticated, Closed, CommandDone, MessageSent, SessionEvent, SessionReady, StartTLS
from .options import SessionOptions
from .protocol import table as protocol
from .replies import Reply
from .results import SendResult
from .trace import TraceStep, describe, hide_credentials
from .transaction import Pending

#: What a command is called in ``TraceStep.answers`` when no line of its own went out for it.
_NO_LINE = {"GREETING": "(the connection)", "END": "(the end of the data)"}


def _reply_words(reply: Reply | None) -> str:
    return "" if reply is None else f" ({reply.code} {' '.join(reply.lines)})".rstrip()


def _result_words(ticket: int, result: SendResult) -> str:
    head = f"message {ticket} {result.outcome.value.replace('_', ' ')}"
    parts = []
    if result.accepted:
        parts.append(f"accepted for {', '.join(result.accepted)}")
    if result.refused:
        refused = (f"{rcpt}{_reply_words(reply)}" for rcpt, reply in result.refused.items())
        parts.append(f"refused for {', '.join(refused)}")
    if result.reply is not None:
        parts.append(f"final reply{_reply_words(result.reply)}")
    if result.error is not None:
        parts.append(f"because {result.error}")
    return head + (": " + "; ".join(parts) if parts else "")


def event_words(item: SessionEvent | SMTPError) -> str:
    """An event (or the error that ended the session) in words, for a lecture or a log."""
    match item:
        case SessionReady(capabilities=caps, encrypted=encrypted, authenticated_as=user):
            offered = ", ".join(f"{word} {param}".strip() for word, param in caps.keywords.items())
            how = [*(["encrypted"] if encrypted else ["not encrypted"]),
                   *([f"authenticated as {user}"] if user else [])]
            extensions = f"the server offers {offered}" if offered else "no extensions (HELO)"
            return f"the session is open ({', '.join(how)}); {extensions}"
        case StartTLS():
            return "220 to STARTTLS: the client now runs the TLS handshake"
        case Authenticated(mechanism=mechanism, reply=reply):
            return f"authenticated with {mechanism}{_reply_words(reply)}"
        case MessageSent(ticket=ticket, result=result):
            return _result_words(ticket, result)
        case CommandDone(verb=verb, reply=reply):
            return f"{verb} answered{_reply_words(reply)}"
        case Closed(reply=reply, error=error):
            if error is not None:
                return f"the session is over: it failed ({type(error).__name__})"
            return "the session is over" + (f": {reply.code} to QUIT" if reply is not None else "")
        case SMTPError():
            return f"error ({type(item).__name__}): {item}"
    return describe(item)


class TracedSessionModel(SessionModel):
    """A session model that records every step in ``trace``."""

    def __init__(self, options: SessionOptions) -> None:
        super().__init__(options)
        self.trace: list[TraceStep] = []
        # the line each command in flight went out as (masked), by the Pending's id; the Pending
        # itself is kept beside it, so a recycled id is never taken for another command
        self._lines: dict[int, tuple[Pending, str]] = {}

    def _send(self, data: bytes, pending: Pending | None) -> None:
        super()._send(data, pending)
        if pending is not None:
            line = data.split(b"\r\n", 1)[0]
            if pending.verb == "END" and not line.upper().startswith(b"BDAT"):
                line = b"."  # the content, then "." (its lines are the step's own)
            sasl = pending.verb == "AUTH" and not line.upper().startswith(b"AUTH ")
            shown = hide_credentials(line + b"\r\n", sasl)[:-2]
            self._lines[id(pending)] = (pending, shown.decode("utf-8", "replace"))

    def _answered(self, pending: Pending | None) -> str:
        if pending is None:
            return ""
        kept = self._lines.pop(id(pending), None)
        if kept is not None and kept[0] is pending:
            return kept[1]
        text = _NO_LINE.get(pending.verb, pending.verb)
        return f"{text} for {pending.rcpt}" if pending.rcpt else text  # LMTP: one reply per recipient

    def _step(self, reply: Reply | None, note: str, action: Callable[[], None]) -> None:
        # The step is what the action added: output, events, the row taken (the model notes each).
        before, out, emitted = self.state, list(self._out), self._emitted
        inflight = self._inflight
        pending = inflight[0] if reply is not None and len(inflight) > self._unwritten else None
        self.row = -1
        action()
        now = self._out
        kept = len(now) >= len(out) and all(a is b for a, b in zip(out, now, strict=False))
        sent = b"".join(now[len(out) :] if kept else now)  # else unsent output was dropped, then added to
        added = min(self._emitted - emitted, len(self._events))
        items = list(self._events)[len(self._events) - added :]
        rows = (self.row,) if self.row >= 0 else ()
        # A SASL response is what a step into auth_response sends: it is masked whole.
        masked = hide_credentials(sent, self.state == protocol.AUTH_RESPONSE)
        answered = self._answered(pending)
        self.trace.append(TraceStep(before, reply, self.state, masked, tuple(describe(i) for i in items), note, rows,
                                    answered, tuple(event_words(i) for i in items)))


def model_for(options: SessionOptions) -> SessionModel:
    """The model a session with these options needs: one that records a trace, or the plain one."""
    return TracedSessionModel(options) if options.trace else SessionModel(options)


__all__ = ["TracedSessionModel", "event_words", "model_for"]
