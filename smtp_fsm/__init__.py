"""smtp_fsm: an SMTP client whose protocol logic is one explicit finite-state machine.

Every name below loads on first use (PEP 562), so ``import smtp_fsm`` costs next to
nothing: the pytest plugin is loaded in every pytest run of every project that has
smtp_fsm installed, and the asyncio driver, the only one that needs asyncio, loads it
only when ``AsyncSMTPClient`` is asked for.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: about 10 ms)
if TYPE_CHECKING:
    from typing import Any

    from .aio import AsyncSMTPClient
    from .errors import (
        AuthenticationError,
        DataRefused,
        LocalProtocolError,
        PoolClosed,
        RecipientsRefused,
        RemoteProtocolError,
        SenderRefused,
        ServerDisconnected,
        SMTPConnectError,
        SMTPError,
        SMTPReplyError,
        SMTPTimeout,
        TLSError,
        TLSHandshakeTimeout,
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
    from .options import ClientOptions, SessionOptions
    from .pool.aio import AsyncSMTPPool
    from .pool.ledger import Sent
    from .pool.sync import SMTPPool
    from .protocol.table import State
    from .replies import Reply
    from .results import Outcome, SendResult
    from .session import ClientSession, MessageItem, Notify, SendOptions, ehlo_name
    from .sync import SMTPClient

#: The one place the version is written (pyproject.toml reads it; ``smtp-fsm --version`` prints it).
__version__ = "0.2.0"

#: Each public name and the module that defines it.
_WHERE = {
    "NEED_DATA": ".events",
    "AsyncSMTPClient": ".aio",
    "AsyncSMTPPool": ".pool.aio",
    "Authenticated": ".events",
    "AuthenticationError": ".errors",
    "Capabilities": ".extensions",
    "ClientOptions": ".options",
    "ClientSession": ".session",
    "Closed": ".events",
    "CommandDone": ".events",
    "DataRefused": ".errors",
    "Event": ".events",
    "LocalProtocolError": ".errors",
    "MessageItem": ".session",
    "MessageSent": ".events",
    "NeedData": ".events",
    "Notify": ".session",
    "Outcome": ".results",
    "PoolClosed": ".errors",
    "SMTPPool": ".pool.sync",
    "Sent": ".pool.ledger",
    "RecipientsRefused": ".errors",
    "RemoteProtocolError": ".errors",
    "Reply": ".replies",
    "SMTPClient": ".sync",
    "SMTPConnectError": ".errors",
    "SMTPError": ".errors",
    "SMTPReplyError": ".errors",
    "SMTPTimeout": ".errors",
    "SendOptions": ".session",
    "SendResult": ".results",
    "SenderRefused": ".errors",
    "ServerDisconnected": ".errors",
    "SessionEvent": ".events",
    "SessionOptions": ".options",
    "SessionReady": ".events",
    "StartTLS": ".events",
    "State": ".protocol.table",
    "TLSError": ".errors",
    "TLSHandshakeTimeout": ".errors",
    "TLSUnavailable": ".errors",
    "ehlo_name": ".session",
}


def __getattr__(name: str) -> Any:
    return _lazy(__name__, _WHERE, globals(), name)


def _lazy(package: str, where: dict[str, str], namespace: dict[str, Any], name: str) -> Any:
    """A package's lazy attribute: the name from its module (kept in ``namespace``), or a submodule."""
    module = where.get(name)
    if module is None:
        return _submodule(package, name)  # smtp_fsm.session, smtp_fsm.mx, ... as after an eager import
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value  # the next look-up is an ordinary one
    return value


def _submodule(package: str, name: str) -> Any:
    """``package.name`` when it is a submodule (imported now), else the AttributeError Python expects."""
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise  # the submodule exists but needs something missing: say so
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "NEED_DATA",
    "AsyncSMTPClient",
    "AsyncSMTPPool",
    "Authenticated",
    "AuthenticationError",
    "Capabilities",
    "ClientOptions",
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
    "PoolClosed",
    "RecipientsRefused",
    "RemoteProtocolError",
    "Reply",
    "SMTPClient",
    "SMTPConnectError",
    "SMTPError",
    "SMTPPool",
    "SMTPReplyError",
    "SMTPTimeout",
    "SendOptions",
    "SendResult",
    "SenderRefused",
    "Sent",
    "ServerDisconnected",
    "SessionEvent",
    "SessionOptions",
    "SessionReady",
    "StartTLS",
    "State",
    "TLSError",
    "TLSHandshakeTimeout",
    "TLSUnavailable",
    "ehlo_name",
]
