"""Hostile behaviours for the scripted server: each rewrites the script at server step ``k``.

Steps count the server's chunks in the transcript from 1 (step 1 is the
greeting).  Pass them to ``ScriptedSMTPServer(transcript, behaviour, ...)``.
After the hostile act the server only waits for the client to go away, so a
client that gives up correctly leaves no failure behind.

What a correct client does (the tests prove it for both drivers):

========================  ================================================
``close_at(k)``            ServerDisconnected
``close_mid_reply(k)``     ServerDisconnected
``drip(k)``                SMTPTimeout, when the reply takes longer than the
                           client's per-reply timeout (not per read)
``overlong_line(k)``       RemoteProtocolError
``garbage(k)``             RemoteProtocolError
``extra_reply(k)``         RemoteProtocolError (the reply answers no command)
``shutdown_at(k)``         ServerDisconnected carrying the 421
``never_answer(k)``        SMTPTimeout
========================  ================================================
"""

from __future__ import annotations

from ..replies import MAX_LINE
from .scripted import Action, Behaviour, Close, Drain, Hang, Send, step_index

#: What ``shutdown_at`` sends (RFC 5321 §3.8).
SHUTDOWN = b"421 4.3.2 scripted server shutting down\r\n"


def _at(k: int, actions: list[Action]) -> tuple[int, Send]:
    index = step_index(actions, k)
    action = actions[index]
    if not isinstance(action, Send):
        raise ValueError(f"server step {k} is a close, not a reply")
    return index, action


def _then_leave(actions: list[Action], index: int, *instead: Action) -> list[Action]:
    """The script up to step ``index``, then ``instead``, then wait for the client to go."""
    return [*actions[:index], *instead, Drain(strict=False)]


def close_at(k: int) -> Behaviour:
    """Close the connection instead of sending reply ``k``."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index = step_index(actions, k)
        return [*actions[:index], Close(k)]

    return behaviour


def close_mid_reply(k: int) -> Behaviour:
    """Send the first half of reply ``k`` (at least one byte, never the final CRLF), then close."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index, send = _at(k, actions)
        half = max(1, min(len(send.data) // 2, len(send.data) - 2))
        return [*actions[:index], Send(send.data[:half], k, send.lineno), Close(k)]

    return behaviour


def drip(k: int | None = None, delay: float = 0.05) -> Behaviour:
    """Send reply ``k`` (every reply when None) one byte at a time, ``delay`` seconds apart."""

    def behaviour(actions: list[Action]) -> list[Action]:
        return [
            Send(a.data, a.step, a.lineno, delay) if isinstance(a, Send) and (k is None or a.step == k) else a
            for a in actions
        ]

    return behaviour


def overlong_line(k: int, length: int = 2 * MAX_LINE) -> Behaviour:
    """Replace reply ``k`` by a line of ``length`` octets (the engine's bound is MAX_LINE)."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index, send = _at(k, actions)
        code = send.data[:3] if send.data[:3].isdigit() else b"250"
        line = code + b" " + b"x" * max(0, length - 4) + b"\r\n"
        return _then_leave(actions, index, Send(line, k, send.lineno))

    return behaviour


def garbage(k: int, data: bytes = b"HELLO, this is not a reply code\r\n") -> Behaviour:
    """Replace reply ``k`` by ``data``."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index, send = _at(k, actions)
        return _then_leave(actions, index, Send(data, k, send.lineno))

    return behaviour


def extra_reply(k: int, extra: bytes = b"250 2.0.0 nobody asked for this\r\n") -> Behaviour:
    """Send reply ``k`` and, in the same write, a reply to no command.

    Choose a ``k`` after which the client waits for nothing (the final reply
    to a message, a NOOP's reply): otherwise the extra reply is taken as the
    answer to the client's next command, which no client can tell apart.
    """

    def behaviour(actions: list[Action]) -> list[Action]:
        index, send = _at(k, actions)
        return _then_leave(actions, index, Send(send.data + extra, k, send.lineno))

    return behaviour


def shutdown_at(k: int, reply: bytes = SHUTDOWN) -> Behaviour:
    """Send a 421 instead of reply ``k`` (then wait for the client to close)."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index, send = _at(k, actions)
        return _then_leave(actions, index, Send(reply, k, send.lineno))

    return behaviour


def never_answer(k: int) -> Behaviour:
    """Send nothing from reply ``k`` on; keep the connection open until the client gives up."""

    def behaviour(actions: list[Action]) -> list[Action]:
        index = step_index(actions, k)
        return [*actions[:index], Hang(k)]

    return behaviour


__all__ = [
    "SHUTDOWN",
    "close_at",
    "close_mid_reply",
    "drip",
    "extra_reply",
    "garbage",
    "never_answer",
    "overlong_line",
    "shutdown_at",
]
