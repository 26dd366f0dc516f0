"""smtp_fsm: an SMTP client whose protocol logic is one explicit finite-state machine."""

from __future__ import annotations

from .aio import AsyncSMTPClient
from .errors import (
    AuthenticationError,
    DataRefused,
    LocalProtocolError,
    RecipientsRefused,
    RemoteProtocolError,
    SenderRefused,
    ServerDisconnected,
    SMTPConnectError,
    SMTPError,
    SMTPReplyError,
    SMTPTimeout,
    TLSError,
    TLSUnavailable,
)
from .events import (
    NEED_DATA,
    Authenticated,
    Closed,
    CommandDone,
    Event,
    MessageSent,
    NeedData,
    SessionEvent,
    SessionReady,
    StartTLS,
)
from .extensions import Capabilities
from .protocol.table import State
from .replies import Reply
from .results import Outcome, SendResult
from .session import ClientSession, MessageItem, Notify, SendOptions, ehlo_name
from .sync import SMTPClient

__version__ = "0.1.0"

__all__ = [
    "NEED_DATA",
    "AsyncSMTPClient",
    "Authenticated",
    "AuthenticationError",
    "Capabilities",
    "ClientSession",
    "Closed",
    "CommandDone",
    "DataRefused",
    "Event",
    "LocalProtocolError",
    "MessageItem",
    "MessageSent",
    "NeedData",
    "Notify",
    "Outcome",
    "RecipientsRefused",
    "RemoteProtocolError",
    "Reply",
    "SMTPClient",
    "SMTPConnectError",
    "SMTPError",
    "SMTPReplyError",
    "SMTPTimeout",
    "SendOptions",
    "SendResult",
    "SenderRefused",
    "ServerDisconnected",
    "SessionEvent",
    "SessionReady",
    "StartTLS",
    "State",
    "TLSError",
    "TLSUnavailable",
    "ehlo_name",
]
