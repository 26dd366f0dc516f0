"""The one trace model: what each step of a session received, did and became.

A step is one reply from the server (or one thing the caller did: queued
work, reported the TLS handshake, saw the connection close) with the state
before, the bytes the client sent in answer, the state after and the events.
Credentials never enter a trace: AUTH data is recorded as ``MASK``, a
placeholder that replay accepts in place of any credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from .replies import Reply

#: Stands for credentials in traces, transcripts and logs.
MASK = b"<credentials>"


@dataclass(frozen=True)
class TraceStep:
    state_before: str
    reply: Reply | None
    state_after: str
    sent: bytes
    events: tuple[str, ...]
    note: str = ""
