"""The error hierarchy: local errors are the caller's fault, remote ones the server's.

Everything the library raises is an :class:`SMTPError`.  The split follows h11:

* :class:`LocalProtocolError` -- the caller asked for something invalid (a CR
  in an address, AUTH in clear text to a remote host, a message larger than
  the server accepts).  It is raised before a single byte of the offending
  command is produced, so the connection stays usable.
* :class:`RemoteProtocolError` -- the server broke the protocol (garbage
  instead of a reply code, an over-long line, an unsolicited reply, bytes
  injected after STARTTLS).
* :class:`SMTPReplyError` -- the server spoke correctly but said no; it
  carries the :class:`~smtp_fsm.replies.Reply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .replies import Reply
    from .results import SendResult


class SMTPError(Exception):
    """Base class of every error smtp_fsm raises.

    When an error cuts a driver's ``send_many`` (or ``sendmail``) short, it says
    what became of every message: ``completed`` holds the results of those that
    finished (delivered or refused), ``uncertain`` the submitted items whose
    content went out with no final reply (they may have been delivered), and
    ``unsent`` the submitted items none of whose content went out (safe to send
    again).  Items are exactly what the caller passed, in order.
    """

    completed: tuple[SendResult, ...] = ()
    uncertain: tuple[Any, ...] = ()
    unsent: tuple[Any, ...] = ()


class LocalProtocolError(SMTPError):
    """The caller asked for something invalid; nothing of it was written."""


class RemoteProtocolError(SMTPError):
    """The server broke the protocol; ``data`` holds the offending bytes, if any."""

    def __init__(self, message: str, data: bytes | None = None, state: str | None = None) -> None:
        detail = message
        if state is not None:
            detail = f"{message} (in state {state!r})"
        if data is not None:
            detail = f"{detail}: {data[:200]!r}"
        super().__init__(detail)
        self.data = data
        self.state = state


class SMTPReplyError(SMTPError):
    """The server answered with a refusal; ``reply`` is that answer."""

    def __init__(self, reply: Reply, message: str | None = None, state: str | None = None) -> None:
        self.reply = reply
        self.code = reply.code
        self.state = state
        prefix = f"{message}: " if message else ""
        where = f" (in state {state!r})" if state else ""
        # The text starts with the enhanced status code (RFC 2034) when the server sends one.
        super().__init__(f"{prefix}{reply}{where}")


class SenderRefused(SMTPReplyError):
    """MAIL FROM was refused."""

    def __init__(self, reply: Reply, sender: str, state: str | None = None) -> None:
        super().__init__(reply, f"sender {sender!r} refused", state)
        self.sender = sender


class RecipientsRefused(SMTPReplyError):
    """Every recipient was refused; ``replies`` maps each address to its reply."""

    def __init__(self, replies: dict[str, Reply], state: str | None = None) -> None:
        first = next(iter(replies.values()))
        super().__init__(first, f"all {len(replies)} recipient(s) refused", state)
        self.replies = dict(replies)


class DataRefused(SMTPReplyError):
    """DATA, the message content or a BDAT chunk was refused."""


class AuthenticationError(SMTPReplyError):
    """AUTH failed (535, 534, 538, 454, ...) or no usable mechanism was offered."""


class TLSUnavailable(SMTPReplyError):
    """STARTTLS was required but the server did not offer it or refused it."""


class ServerDisconnected(SMTPError):
    """The server sent 421 or closed the connection outside of QUIT.

    ``reply`` is the 421 reply (None when the connection simply closed),
    ``state`` the state the session was in.
    """

    def __init__(self, message: str, reply: Reply | None = None, state: str | None = None) -> None:
        detail = f"{message} (in state {state!r})" if state else message
        if reply is not None:
            detail = f"{detail}: {reply}"
        super().__init__(detail)
        self.reply = reply
        self.state = state


class SMTPTimeout(SMTPError, TimeoutError):
    """No complete reply (or no connection) within the deadline."""


class TLSError(SMTPError):
    """The TLS handshake or certificate verification failed (chained from ``ssl.SSLError``)."""


class TLSHandshakeTimeout(SMTPTimeout, TLSError):
    """The TLS handshake did not finish in time: a timeout, and a TLS failure (never fall back to plain text)."""


class SMTPConnectError(SMTPError, OSError):
    """The TCP connection could not be made (chained from the ``OSError``)."""


class PoolClosed(SMTPError):
    """A pool was closed before this message could finish (or a message was submitted after)."""
