"""smtp_fsm: an SMTP client whose protocol logic is one explicit finite-state machine."""

from __future__ import annotations

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
    SessionReady,
    StartTLS,
)
from .extensions import Capabilities
from .replies import Reply
from .results import SendResult
from .session import ClientSession

__version__ = "0.1.0"

__all__ = [
    "NEED_DATA",
    "Authenticated",
    "AuthenticationError",
    "Capabilities",
    "ClientSession",
    "Closed",
    "CommandDone",
    "DataRefused",
    "Event",
    "LocalProtocolError",
    "MessageSent",
    "RecipientsRefused",
    "RemoteProtocolError",
    "Reply",
    "SMTPConnectError",
    "SMTPError",
    "SMTPReplyError",
    "SMTPTimeout",
    "SendResult",
    "SenderRefused",
    "ServerDisconnected",
    "SessionReady",
    "StartTLS",
    "TLSError",
    "TLSUnavailable",
]

from .aio import AsyncSMTPClient  # noqa: E402  (drivers sit on top of the engine)
from .sync import SMTPClient  # noqa: E402

__all__ += ["AsyncSMTPClient", "SMTPClient"]
