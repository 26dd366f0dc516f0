"""The sans-IO engine: bytes in, events and bytes out; the protocol package decides.

``ClientSession`` never touches a socket, a clock or a thread.  The caller
feeds it what the server sent (``receive_data``; ``b""`` when the server
closed), writes what ``data_to_send`` returns, and reads ``next_event`` until
it says ``NEED_DATA`` (feed it) or ``Closed`` (the end).  Work is queued with ``sendmail``, ``send_message``,
``send_many``, ``noop``, ``rset`` and ``quit``; each returns a ticket, and the
outcome comes back as an event carrying that ticket.

Life cycle: every session ends the same way, whatever ended it.
- An error that ends the session (a refused greeting or AUTH, STARTTLS
  unavailable, a 421, the server's close, a broken reply, ``close(reason)``)
  is raised by ``next_event`` exactly once, after the results it settled.
  Any courtesy QUIT was queued in ``data_to_send()`` by the reply that
  caused the error, so a loop that writes every turn has sent it by then.
- Then comes one ``Closed`` event (``Closed.error`` is that error, or None):
  at once when nothing more can be said, or once the server has answered the
  courtesy QUIT (or closed).  After a refusal the session is in ``quit``
  until then; feed it as usual.
- From then on ``next_event`` returns that same ``Closed``, ``data_to_send``
  returns ``b""``, ``receive_data`` ignores what it is given, queuing work
  raises, and ``close()`` does nothing.

A loop written to this ends: write ``data_to_send()``; on ``NEED_DATA`` read
and feed; on ``StartTLS`` wrap the socket and call ``tls_established()`` (or
``close(the error)`` if the handshake failed); catch ``SMTPError`` once and
keep going; stop at ``Closed``.

This is the embedder's whole surface.  Behind it, a private model (_model.py)
keeps the bookkeeping and carries out the actions of the protocol table
(protocol/table.py), which decides everything the session does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from email.message import Message
from typing import Protocol, TypedDict

from ._model import END_OF_DATA
from ._traced import model_for
from .errors import LocalProtocolError, SMTPError, SMTPTimeout, TLSError, TLSHandshakeTimeout
from .events import NeedData, SessionEvent
from .extensions import Capabilities
from .message import envelope_from_headers
from .options import (
    DEFAULT_BDAT_WINDOW,
    DEFAULT_CHUNK_SIZE,
    STARTTLS_POLICIES,
    QuitAfter,
    SessionOptions,
    StartTLSPolicy,
    session_options,
)
from .protocol.table import TLS_HANDSHAKE, State
from .trace import TraceStep
from .transaction import Submission

#: One item of ``send_many``: an ``email`` message (envelope from its headers), or ``(from, to, msg)``.
MessageItem = Message | tuple[str, str | Iterable[str], bytes | str | Message]


#: DSN NOTIFY (RFC 3461): NEVER, or some of SUCCESS, FAILURE, DELAY; a mapping gives it per recipient.
Notify = Sequence[str] | Mapping[str, Sequence[str]]


class SendOptions(TypedDict, total=False):
    """The send options as one typed dict, for code that passes them through (``**options``)."""

    mail_options: Sequence[str]
    rcpt_options: Sequence[str]
    notify: Notify | None
    ret: str | None
    envid: str | None


class ClientSession:
    """One SMTP (or LMTP) client session, sans-IO, driven by the protocol table.

    Every keyword is checked here, before a byte exists.  ``local_hostname`` is the
    name said in EHLO: a host name, or our address as a literal (``ehlo_name(sock)``
    gives it for a connected socket).  ``encrypted`` and ``loopback`` are facts only
    the caller can know: whether the transport is already TLS (implicit TLS) and
    whether the peer is a loopback address.  AUTH over an unencrypted link to a peer
    that is not loopback is refused unless ``allow_insecure_auth`` is set.
    ``quit_after`` stops the session at that point with QUIT (see ``QuitAfter``): the
    first message queued is then only probed, its ``MessageSent`` says which
    recipients were accepted (outcome ``not_sent``), and later work is not sent.
    The settings cannot change afterwards.  The keywords are those of ``SessionOptions``,
    which checks them; ``SessionOptions.new_session()`` makes a session from one already made.
    """

    __slots__ = ("__weakref__", "_model")

    def __init__(
        self,
        *,
        local_hostname: str,
        lmtp: bool = False,
        encrypted: bool = False,
        loopback: bool = False,
        starttls: StartTLSPolicy = "opportunistic",
        username: str | None = None,
        password: str | None = None,
        oauth_token: str | None = None,
        auth_mechanism: str | None = None,
        allow_insecure_auth: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        bdat_window: int = DEFAULT_BDAT_WINDOW,
        quit_after: QuitAfter | None = None,
        trace: bool = False,
    ) -> None:
        self._model = model_for(session_options(locals()))

    # -- the I/O surface ------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the server; ``b""`` means the server closed the connection.

        Any bytes-like object will do (trio's ``receive_some`` returns a bytearray); it is
        copied only when it is not ``bytes``.
        """
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"receive_data takes bytes, bytearray or memoryview, not {type(data).__name__}")
            data = bytes(data)
        self._model.receive_data(data)

    def data_to_send(self) -> bytes:
        """The bytes to write to the server now (possibly empty).

        From here on, a message whose content is in these bytes may reach the server:
        if no final reply comes, its outcome is ``uncertain``, never ``not_sent``.
        """
        return self._model.data_to_send()

    def next_event(self) -> SessionEvent | NeedData:
        """The next event, or ``NEED_DATA`` when the engine must be fed.

        Raises the error that ended the session, once; then returns ``Closed`` for good
        (the module's life cycle).
        """
        return self._model.next_event()

    def tls_established(self) -> None:
        """Report that the TLS handshake the ``StartTLS`` event asked for is done.

        A handshake that failed is reported with ``close(the_error)``: the session ends
        with a ``TLSError`` chained from it.
        """
        self._model.handshake_done()

    def close(self, reason: BaseException | None = None) -> None:
        """End the session here; it takes no more input or work.  Does nothing once it has ended.

        ``close()`` is a clean end (``Closed`` with no error).  ``close(reason)`` says why the
        caller gave up -- a timeout, a failed TLS handshake, any exception -- and the session
        fails with it: an ``SMTPError`` as given, else wrapped and chained from it
        (``SMTPTimeout`` for a ``TimeoutError``, ``TLSError`` for anything else while the
        handshake was owed, else ``SMTPError``).
        Either way, messages not finished get their ``MessageSent`` (``uncertain`` when their
        content was handed out, else ``not_sent``), then the life cycle's ending follows.
        """
        if reason is not None and not isinstance(reason, SMTPError):
            if not isinstance(reason, BaseException):
                raise TypeError(f"close() takes an exception or None, not {type(reason).__name__}")
            reason = _local_error(reason, self._model.state)
        self._model.release(reason)

    # -- what the caller may read -----------------------------------------------

    @property
    def state(self) -> State:
        """The current state (a ``State``, which is its name as a string: protocol/table.py)."""
        return _STATES[self._model.state]

    @property
    def capabilities(self) -> Capabilities:
        """The parsed answer to the last EHLO (after STARTTLS, the second one)."""
        return self._model.capabilities

    @property
    def awaiting(self) -> str | None:
        """What the oldest reply awaited answers ("greeting", "EHLO", "MAIL FROM", "RCPT TO", "DATA",
        ``END_OF_DATA``, "QUIT", ...), or None when no reply is awaited (``if session.awaiting:``).

        A loop's per-reply deadline reads it (RFC 5321 §4.5.3.2): 5 minutes for most replies,
        and 10 for ``END_OF_DATA`` (§4.5.3.2.6), because a client that gives up earlier is
        what creates duplicates.
        """
        return self._model.awaiting

    @property
    def replies_received(self) -> int:
        """Complete replies read so far: restart the per-reply deadline whenever it moves."""
        return self._model.replies_received

    @property
    def trace(self) -> list[TraceStep] | None:
        """The recorded steps (None unless made with ``trace=True``); each names the rows it took."""
        return self._model.trace

    # -- work -----------------------------------------------------------------

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Iterable[str],
        msg: bytes | str | Message,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        notify: Notify | None = None,
        ret: str | None = None,
        envid: str | None = None,
    ) -> int:
        """Queue one message; returns its ticket (``MessageSent.ticket``).

        ``mail_options`` and ``rcpt_options``: extra MAIL FROM and RCPT TO parameters,
        ``"NAME=value"`` or ``"NAME"``.  DSN (RFC 3461): ``notify`` (NEVER, or some of
        SUCCESS, FAILURE, DELAY; a mapping gives it per recipient), ``ret`` (FULL or HDRS),
        ``envid``.  Checked against the capabilities once known (the syntax alone before):
        nothing invalid is queued.  Recipients given twice are sent once.
        """
        submission = submission_of(from_addr, to_addrs, msg, mail_options, rcpt_options, notify, ret, envid)
        return self._model.queue_messages([submission])[0]

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Iterable[str] | None = None,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        notify: Notify | None = None,
        ret: str | None = None,
        envid: str | None = None,
    ) -> int:
        """Queue an ``email`` message; the envelope comes from its headers unless given."""
        sender, recipients = envelope_from_headers(msg)
        return self.sendmail(from_addr if from_addr is not None else sender,
                             to_addrs if to_addrs is not None else recipients, msg, mail_options=mail_options,
                             rcpt_options=rcpt_options, notify=notify, ret=ret, envid=envid)

    def send_many(self, items: Iterable[MessageItem]) -> list[int]:
        """Queue several messages (``EmailMessage`` or ``(from, to, msg)``); pipelined when possible.

        Every item is checked before any is queued: one invalid item raises and queues nothing.
        """
        return queue_messages(self, [item_submission(item) for item in items])

    def noop(self) -> int:
        """Queue a NOOP; its reply comes back as ``CommandDone``."""
        return self._model.queue("noop")

    def rset(self) -> int:
        """Queue an RSET; its reply comes back as ``CommandDone``."""
        return self._model.queue("rset")

    def quit(self) -> int:
        """Queue QUIT: the session ends with ``Closed`` once the server answers (or closes)."""
        return self._model.queue("quit")

    def __repr__(self) -> str:
        model = self._model
        user = model.credentials.username if model.credentials else None
        return f"<ClientSession state={model.state!r} user={user!r} awaiting={model.awaiting!r}>"


_STATES: dict[str, State] = {state.value: state for state in State}


def submission_of(from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message,
                mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (), notify: Notify | None = None,
                ret: str | None = None, envid: str | None = None) -> Submission:
    """A message as given; recipients given twice are sent once."""
    recipients = tuple(dict.fromkeys((to_addrs,) if isinstance(to_addrs, str) else to_addrs))
    if not recipients:
        raise LocalProtocolError("no recipients given")
    return Submission(from_addr, recipients, msg, notify, ret.upper() if ret else None, envid,
                      tuple(mail_options), tuple(rcpt_options))


def session_from_options(options: SessionOptions) -> ClientSession:
    """A session with these settings (checked when ``options`` was made, not again)."""
    session = ClientSession.__new__(ClientSession)
    session._model = model_for(options)
    return session


def item_submission(item: MessageItem) -> Submission:
    """A ``send_many`` item as a submission: an ``email`` message's envelope comes from its headers."""
    if isinstance(item, Message):
        return submission_of(*envelope_from_headers(item), item)
    return submission_of(*item)


def queue_messages(session: ClientSession, submissions: Sequence[Submission]) -> list[int]:
    """Queue messages, each checked before any is queued (one invalid raises and queues nothing)."""
    return session._model.queue_messages(submissions)


def _local_error(reason: BaseException, state: str) -> SMTPError:
    """What ``close(reason)`` ends the session with, when the reason is not an SMTPError."""
    detail = str(reason)
    if not detail:  # trio's BrokenResourceError says nothing; what broke is its cause
        cause = reason.__cause__
        detail = f"{type(reason).__name__}: {cause}" if cause is not None else type(reason).__name__
    error: SMTPError
    if isinstance(reason, TimeoutError):
        if state == TLS_HANDSHAKE:
            error = TLSHandshakeTimeout(f"timed out in the TLS handshake: {detail}")
        else:
            error = SMTPTimeout(f"timed out in state {state!r}: {detail}")
    elif state == TLS_HANDSHAKE:
        error = TLSError(f"TLS handshake failed: {detail}")
    else:
        error = SMTPError(f"closed in state {state!r}: {type(reason).__name__}: {detail}")
    error.__cause__ = reason
    return error


class _Socket(Protocol):
    def getsockname(self) -> object: ...


def ehlo_name(local: _Socket | str) -> str:
    """The EHLO name for a connection when no host name is configured: our end's address as an
    RFC 5321 §4.1.3 literal, ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``.

    Give the connected socket (its ``getsockname()`` is read) or our address as a string.
    """
    import ipaddress  # (only the drivers and embedders call this)

    if isinstance(local, str):
        address = local
    else:
        sockname = local.getsockname()
        address = str(sockname[0] if isinstance(sockname, tuple) else sockname)
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise LocalProtocolError(f"ehlo_name needs an IP address or a connected IP socket, not {address!r}") from None
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


def replies_read(session: ClientSession) -> int:
    """Complete replies read so far (the drivers' fast path to ``replies_received``)."""
    return session._model.replies_received


def bytes_buffered(session: ClientSession) -> int:
    """Bytes held of a reply not complete yet (the parser bounds them)."""
    return session._model.buffered


def session_error(session: ClientSession) -> SMTPError | None:
    """The error that ended the session, once it has (the drivers read it; embedders get it raised
    once and on ``Closed.error``)."""
    return session._model.error


__all__ = ["END_OF_DATA", "STARTTLS_POLICIES", "ClientSession", "MessageItem", "Notify", "QuitAfter", "SendOptions",
           "SessionOptions", "StartTLSPolicy", "State", "bytes_buffered", "ehlo_name", "replies_read",
           "session_error"]
