"""The sans-IO engine: bytes in, events and bytes out; the protocol package decides.

``ClientSession`` never touches a socket, a clock or a thread.  The caller
feeds it what the server sent (``receive_data``; ``b""`` when the server
closed), writes what ``data_to_send`` returns, and reads ``next_event`` until
it says ``NEED_DATA``.  Work is queued with ``sendmail``, ``send_message``,
``send_many``, ``noop``, ``rset`` and ``quit``; each returns a ticket, and the
outcome comes back as an event carrying that ticket.

This is the embedder's whole surface.  Behind it, a private model (_model.py)
keeps the bookkeeping and carries out the actions of the protocol table
(protocol/table.py), which decides everything the session does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from email.message import Message
from typing import Literal, TypedDict, Unpack

from ._model import DEFAULT_CHUNK_SIZE, END_OF_DATA, STARTTLS_POLICIES, SessionModel
from .errors import LocalProtocolError, SMTPError
from .events import Event
from .extensions import Capabilities
from .message import envelope_from_headers
from .trace import TraceStep
from .transaction import Submission

StartTLSPolicy = Literal["opportunistic", "required", "never"]
#: Where ``quit_after`` stops a session (swaks' ``--quit-after``): after the greeting, the first
#: EHLO, the TLS handshake, AUTH, MAIL FROM (a probe of the sender) or the RCPT TOs (of recipients).
QuitAfter = Literal["banner", "ehlo", "tls", "auth", "mail", "rcpt"]
MessageItem = Message | tuple[str, str | Iterable[str], bytes | str | Message]


class SendOptions(TypedDict, total=False):
    """The ESMTP options of one message (keywords of ``sendmail`` and ``send_message``, typed)."""

    #: Extra MAIL FROM parameters, ``"NAME=value"`` or ``"NAME"`` (checked, xtext where needed).
    mail_options: Sequence[str]
    #: Extra RCPT TO parameters, the same way, for every recipient.
    rcpt_options: Sequence[str]
    #: DSN NOTIFY (RFC 3461): NEVER, or some of SUCCESS, FAILURE, DELAY; a mapping gives it per recipient.
    notify: Sequence[str] | Mapping[str, Sequence[str]] | None
    #: DSN RET: FULL or HDRS.
    ret: str | None
    #: DSN ENVID: the envelope's identifier, echoed in the notifications.
    envid: str | None


class ClientSession:
    """One SMTP (or LMTP) client session, sans-IO, driven by the protocol table.

    Every keyword is checked here, before a byte exists.  ``encrypted`` and
    ``loopback`` are facts only the caller can know: whether the transport is
    already TLS (implicit TLS) and whether the peer is a loopback address.  AUTH
    over an unencrypted link to a peer that is not loopback is refused unless
    ``allow_insecure_auth`` is set.  ``quit_after`` stops the session at that point
    with QUIT (see ``QuitAfter``): the first message queued is then only probed, its
    ``MessageSent`` says which recipients were accepted (outcome ``not_sent``), and
    later work is not sent.  The settings cannot change afterwards.
    """

    __slots__ = ("__weakref__", "_model")

    def __init__(
        self,
        *,
        local_hostname: str | None = None,
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
        quit_after: QuitAfter | None = None,
        trace: bool = False,
    ) -> None:
        self._model = SessionModel(
            local_hostname=local_hostname, lmtp=lmtp, encrypted=encrypted, loopback=loopback,
            starttls=starttls, username=username, password=password, oauth_token=oauth_token,
            auth_mechanism=auth_mechanism, allow_insecure_auth=allow_insecure_auth, pipelining=pipelining,
            chunking=chunking, chunk_size=chunk_size, quit_after=quit_after, trace=trace,
        )

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

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA``, or raises the error that ended the session."""
        return self._model.next_event()

    def tls_established(self) -> None:
        """Report that the TLS handshake the ``StartTLS`` event asked for is done."""
        self._model.handshake_done()

    def close(self, reason: SMTPError | None = None) -> None:
        """Release the engine: it takes no more input or work.

        Messages not finished yet get their ``MessageSent`` now (``uncertain`` when their
        content was handed out, else ``not_sent``), with ``reason`` (why the caller gave up:
        a timeout, say) as their error; ``next_event`` still hands them out.
        """
        self._model.release(reason)

    # -- what the caller may read -----------------------------------------------

    @property
    def state(self) -> str:
        """The current state's name (protocol/table.py ``STATES``)."""
        return self._model.state

    @property
    def capabilities(self) -> Capabilities:
        """The parsed answer to the last EHLO (after STARTTLS, the second one)."""
        return self._model.capabilities

    @property
    def error(self) -> SMTPError | None:
        """The error that ended the session, once it has ended with one (else None)."""
        return self._model.error

    @property
    def awaiting(self) -> str | None:
        """What the oldest reply awaited answers ("greeting", "EHLO", "MAIL FROM", "RCPT TO", "DATA",
        ``END_OF_DATA``, "QUIT", ...), or None when nothing is awaited.

        Drivers name it in a timeout error, and give ``END_OF_DATA`` their ``data_timeout``:
        RFC 5321 §4.5.3.2.6 gives that reply 10 minutes, because a client that gives up
        earlier is what creates duplicates.
        """
        return self._model.awaiting

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
        **options: Unpack[SendOptions],
    ) -> int:
        """Queue one message; returns its ticket (``MessageSent.ticket``).

        Checked against the capabilities once known (the syntax alone before): nothing
        invalid is queued.  Recipients given twice are sent once.  ``options``: ``SendOptions``.
        """
        submission = _submission(from_addr, to_addrs, msg, options)
        model = self._model
        model.check_open()
        return model.queue("mail", *model.prepare(submission), checked=True)

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Iterable[str] | None = None,
        **options: Unpack[SendOptions],
    ) -> int:
        """Queue an ``email`` message; the envelope comes from its headers unless given."""
        sender, recipients = envelope_from_headers(msg)
        return self.sendmail(from_addr if from_addr is not None else sender,
                             to_addrs if to_addrs is not None else recipients, msg, **options)

    def send_many(self, items: Iterable[MessageItem]) -> list[int]:
        """Queue several messages (``EmailMessage`` or ``(from, to, msg)``); pipelined when possible.

        Every item is checked before any is queued: one invalid item raises and queues nothing.
        """
        model = self._model
        model.check_open()
        prepared = []
        for item in items:
            to_addrs: str | Iterable[str]
            msg: bytes | str | Message
            if isinstance(item, Message):
                sender, to_addrs = envelope_from_headers(item)
                msg = item
            else:
                sender, to_addrs, msg = item
            prepared.append(model.prepare(_submission(sender, to_addrs, msg, {})))
        return [model.queue("mail", submission, tx) for submission, tx in prepared]

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


def _submission(from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message,
                options: SendOptions) -> Submission:
    """A message as given; recipients given twice are sent once."""
    recipients = tuple(dict.fromkeys((to_addrs,) if isinstance(to_addrs, str) else to_addrs))
    if not recipients:
        raise LocalProtocolError("no recipients given")
    if not options:  # the common case, without the look-ups
        return Submission(from_addr, recipients, msg, None, None, None, (), ())
    ret = options.get("ret")
    return Submission(from_addr, recipients, msg, options.get("notify"), ret.upper() if ret else None,
                      options.get("envid"), tuple(options.get("mail_options", ())),
                      tuple(options.get("rcpt_options", ())))


def replies_read(session: ClientSession) -> int:
    """Complete replies read so far: the drivers restart their per-reply deadline when it moves."""
    return session._model.replies_received


def bytes_buffered(session: ClientSession) -> int:
    """Bytes held of a reply not complete yet (the parser bounds them)."""
    return session._model.buffered


__all__ = ["END_OF_DATA", "STARTTLS_POLICIES", "ClientSession", "QuitAfter", "SendOptions", "StartTLSPolicy",
           "bytes_buffered", "replies_read"]
