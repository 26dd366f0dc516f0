"""The protocol: the table (table.py), what replies mean (rules.py), a message's outcome
(outcomes.py), and the running machine built from the table (runtime.py).

Everything that decides what the client does next lives in this package; the
session (session.py) only keeps the bookkeeping and carries out the table's
actions.
"""

from __future__ import annotations

from .table import (
    AUTH,
    AUTH_CANCEL,
    AUTH_RESPONSE,
    BDAT,
    CLOSED,
    CONTENT,
    DATA,
    DATA_ABORT,
    EHLO,
    FAILED,
    FINAL_STATES,
    GREETING,
    HELO,
    INITIAL,
    LIVE_STATES,
    MAIL,
    NOOP,
    QUIT,
    RCPT,
    READY,
    RSET,
    SETUP_STATES,
    STARTTLS,
    STATE_NAMES,
    STATES,
    TLS_HANDSHAKE,
    TRANSITIONS,
    TRIGGERS,
    WORK_TRIGGERS,
    StateSpec,
    TransitionSpec,
    edges,
)

__all__ = [
    "AUTH",
    "AUTH_CANCEL",
    "AUTH_RESPONSE",
    "BDAT",
    "CLOSED",
    "CONTENT",
    "DATA",
    "DATA_ABORT",
    "EHLO",
    "FAILED",
    "FINAL_STATES",
    "GREETING",
    "HELO",
    "INITIAL",
    "LIVE_STATES",
    "MAIL",
    "NOOP",
    "QUIT",
    "RCPT",
    "READY",
    "RSET",
    "SETUP_STATES",
    "STARTTLS",
    "STATES",
    "STATE_NAMES",
    "TLS_HANDSHAKE",
    "TRANSITIONS",
    "TRIGGERS",
    "WORK_TRIGGERS",
    "StateSpec",
    "TransitionSpec",
    "edges",
]
