"""What the blocking and the asyncio driver share: the API, options, peer facts, and reading events.

The drivers only move bytes.  Everything else is written once, here: the
public methods (``sendmail``, ``send_message``, ``send_many``, ``noop``,
``rset``, ``quit``) check and shape their arguments and hand the work to one
of four primitives that each driver implements with its own I/O -- a plain
call in the blocking driver, a coroutine in the asyncio one.  That is why
``DriverBase`` is generic in what those primitives return: ``SendResult`` for
``SMTPClient``, a coroutine of it for ``AsyncSMTPClient`` (so ``await
client.sendmail(...)`` is typed).  The per-call path stays one Python frame
per layer: an earlier design with generator "operations" cost 5-8% per call
(bench/README.md).
"""

from __future__ import annotations

import enum
import inspect
import select
import socket
import ssl
import types
from collections.abc import Callable, Collection, Iterable, Sequence
from email.message import Message
from typing import Any, Final, Generic, Protocol, Self, TypeVar

from .errors import (
    LocalProtocolError,
    ServerDisconnected,
    SMTPConnectError,
    SMTPError,
    SMTPTimeout,
    TLSError,
    TLSHandshakeTimeout,
)
from .events import Closed, CommandDone, MessageSent, SessionEvent, SessionReady
from .extensions import Capabilities
from .message import envelope_from_headers
from .options import (
    DEFAULT_BDAT_WINDOW,
    DEFAULT_CHUNK_SIZE,
    ClientOptions,
    QuitAfter,
    StartTLSPolicy,
    is_loopback,
    session_options,
)
from .protocol.table import CLOSED, FINAL_STATES, QUIT
from .replies import Reply
from .results import Outcome, SendResult
from .session import (
    END_OF_DATA,
    ClientSession,
    MessageItem,
    Notify,
    bytes_buffered,
    ehlo_name,
    item_submission,
    queue_messages,
    session_error,
    submission_of,
)
from .trace import TraceStep
from .transaction import Submission

SendItem = MessageItem
#: sendmail's and send_message's options, in submission_of's order: mail_options, rcpt_options,
#: notify, ret, envid.
SendArguments = tuple[Sequence[str], Sequence[str], Notify | None, str | None, str | None]

# What the four primitives return: the value itself (blocking) or a coroutine of it (asyncio).
SendT = TypeVar("SendT")  # one SendResult
ManyT = TypeVar("ManyT")  # list[SendResult]
ReplyT = TypeVar("ReplyT")  # Reply
QuitT = TypeVar("QuitT")  # Reply | None


class GoOn(enum.Enum):
    """What a pump's ``until`` returns for an event that does not end the wait."""

    GO_ON = "go on"


GO_ON: Final = GoOn.GO_ON
#: What a pump waits for (its ``until`` returns it).
Waited = TypeVar("Waited")
#: A pump's test of each event: what the call waited for, or GO_ON.
Until = Callable[[SessionEvent], Waited | GoOn]


class Readable:
    """Whether a socket has bytes (or its end) waiting, without blocking: one system call.

    Made once per connection (the descriptor outlives a TLS upgrade), since drivers ask
    before every transaction on a connection that may have sat idle.
    """

    def __init__(self, fileno: int) -> None:
        self.fileno = fileno
        self.poller = select.poll() if hasattr(select, "poll") else None  # Windows has no poll
        if self.poller is not None:
            self.poller.register(fileno, select.POLLIN)

    def __call__(self) -> bool:
        if self.poller is not None:
            return bool(self.poller.poll(0))
        return bool(select.select([self.fileno], [], [], 0)[0])


class Batch:
    """Messages to queue: the items as given (what ``error.unsent`` hands back) and, for one message,
    its send options.  They are checked when queued (``submissions``), after the driver made sure the
    connection still stands: a dead connection is reported before a caller's mistake, as a live one
    would take it.  ``prepared``: the items' submissions, checked already (the pools check each
    message once, when it is submitted)."""

    __slots__ = ("items", "options", "prepared")

    def __init__(self, items: list[SendItem], options: SendArguments | None = None,
                 prepared: list[Submission] | None = None) -> None:
        self.items = items
        self.options = options
        self.prepared = prepared

    def submissions(self) -> list[Submission]:
        """The messages checked (syntax; the capabilities when the session queues them)."""
        if self.prepared is not None:
            return self.prepared
        if self.options is None:
            return [item_submission(item) for item in self.items]
        (item,) = self.items
        recipients: str | Iterable[str]
        msg: bytes | str | Message
        if isinstance(item, Message):
            (sender, recipients), msg = envelope_from_headers(item), item
        else:
            sender, recipients, msg = item
        mail_options, rcpt_options, notify, ret, envid = self.options
        return [submission_of(sender, recipients, msg, mail_options, rcpt_options, notify, ret, envid)]


class Link(Protocol):
    """What the driver base needs of a driver's connection."""

    def flush(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def interrupt(self) -> None: ...


class DriverBase(Generic[SendT, ManyT, ReplyT, QuitT]):
    """The API and the event handling of ``SMTPClient`` and ``AsyncSMTPClient``, written once."""

    _link: Link | None = None  # the connection, while there is one

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        local_hostname: str | None = None,
        timeout: float = 60.0,
        data_timeout: float = 600.0,
        family: int = socket.AF_UNSPEC,
        source_address: tuple[str, int] | None = None,
        tls: bool = False,
        starttls: StartTLSPolicy = "opportunistic",
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        username: str | None = None,
        password: str | None = None,
        oauth_token: str | None = None,
        auth_mechanism: str | None = None,
        allow_insecure_auth: bool = False,
        pipelining: bool = True,
        lmtp: bool = False,
        chunking: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        bdat_window: int = DEFAULT_BDAT_WINDOW,
        quit_after: QuitAfter | None = None,
        trace: bool = False,
    ) -> None:
        # Every invalid keyword raises now, before connecting: the options check them all.  Without a
        # local_hostname, EHLO says our address on the connection (known at connect: ehlo_from_socket).
        session = session_options(dict(locals(), local_hostname=local_hostname or "[127.0.0.1]"))
        self._configure(ClientOptions(
            host=host, port=port, timeout=timeout, data_timeout=data_timeout, family=family,  # type: ignore[arg-type]
            source_address=source_address, tls=tls, tls_context=tls_context, server_hostname=server_hostname,
            session=session, ehlo_from_socket=not local_hostname,
        ))

    @classmethod
    def from_options(cls, options: ClientOptions) -> Self:
        """A client with these settings (``ClientOptions``, checked when made)."""
        if not isinstance(options, ClientOptions):
            raise LocalProtocolError(f"from_options takes ClientOptions, not {type(options).__name__}")
        client = cls.__new__(cls)
        client._configure(options)
        return client

    def _configure(self, options: ClientOptions) -> None:
        self.options = options
        # Read on every call: plain attributes, copied once.
        self.host = options.host
        self.port = options.connect_port
        self.timeout = options.timeout
        self.data_timeout = options.data_timeout
        self.family = options.family
        self.source_address = options.source_address
        self.tls = options.tls
        self.tls_context = options.tls_context
        self.server_hostname = options.tls_server_name
        # The session that runs is built at connect time with the peer's facts (_peer_facts).
        self._session_options = options.session_options
        self.session = self._session_options.new_session()
        self.ready: SessionReady | None = None
        #: The connection is TLS now (implicit TLS, or after STARTTLS's handshake).
        self.encrypted = False

    # -- the API, written once ---------------------------------------------------------

    def sendmail(self, from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message, *,
                 mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (), notify: Notify | None = None,
                 ret: str | None = None, envid: str | None = None) -> SendT:
        """Send one message (bytes or str, or a ``Message``) as given; its ``SendResult``.

        Raises when the message went to nobody (``SenderRefused``, ``RecipientsRefused``, ``DataRefused``).
        ``mail_options``, ``rcpt_options``, ``notify``, ``ret`` and ``envid`` are the engine's
        (``ClientSession.sendmail``).  On ``AsyncSMTPClient``, await it.
        """
        to_addrs = reusable(to_addrs)
        return self._send_one(Batch([(from_addr, to_addrs, msg)], (mail_options, rcpt_options, notify, ret, envid)))

    def send_message(self, msg: Message, from_addr: str | None = None, to_addrs: str | Iterable[str] | None = None,
                     *, mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = (),
                     notify: Notify | None = None, ret: str | None = None, envid: str | None = None) -> SendT:
        """Send an ``email`` message; the envelope comes from its headers unless given.  On
        ``AsyncSMTPClient``, await it."""
        to_addrs = reusable(to_addrs) if to_addrs is not None else None
        item = message_item(msg, from_addr, to_addrs)
        return self._send_one(Batch([item], (mail_options, rcpt_options, notify, ret, envid)))

    def send_many(self, items: Iterable[SendItem]) -> ManyT:
        """Send every message over this connection; one result per message, in order.

        Pipelined across messages when the server allows.  A message the server
        refuses does not stop the others: its result carries the error.  An error
        that cuts the batch short (421, the connection's end, a timeout) carries
        ``completed``, ``uncertain`` and ``unsent``.  On ``AsyncSMTPClient``, await it.
        """
        return self._send_many(Batch([reusable_item(item) for item in items]))

    def noop(self) -> ReplyT:
        """Send NOOP; the server's reply.  On ``AsyncSMTPClient``, await it."""
        return self._command("noop")

    def rset(self) -> ReplyT:
        """Send RSET; the server's reply.  On ``AsyncSMTPClient``, await it."""
        return self._command("rset")

    def quit(self) -> QuitT:
        """Send QUIT and close; returns the 221 (None if the server just closed).  On
        ``AsyncSMTPClient``, await it."""
        return self._quit()

    @property
    def capabilities(self) -> Capabilities:
        """The parsed answer to the last EHLO (after STARTTLS, the second one)."""
        return self.session.capabilities

    def has_extn(self, name: str) -> bool:
        """Whether the server announced the EHLO keyword ``name`` (smtplib's ``has_extn``)."""
        return self.session.capabilities.has_extn(name)

    @property
    def trace(self) -> list[TraceStep]:
        """The recorded steps (empty unless the client was made with ``trace=True``)."""
        return list(self.session.trace or [])

    # -- what each driver implements with its I/O ------------------------------------

    def _send_one(self, batch: Batch) -> SendT:
        raise NotImplementedError

    def _send_many(self, batch: Batch) -> ManyT:
        raise NotImplementedError

    def _command(self, verb: str) -> ReplyT:
        raise NotImplementedError

    def _quit(self) -> QuitT:
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection without QUIT (the engine is released too)."""
        link, self._link = self._link, None
        try:
            if link is not None:
                link.close()
        finally:
            self.session.close()

    def _interrupt(self) -> None:
        """From another task or thread: end the connection under a call in progress, which then
        ends as for a server that left (each message ``uncertain`` or ``not_sent``).  The pools
        use it when closing past their deadline."""
        link = self._link
        if link is not None:
            link.interrupt()

    def _is_connected(self) -> bool:
        return self._link is not None

    def _abandon(self, error: SMTPError) -> SMTPError:
        """Give up on the connection: unfinished messages get ``error`` (uncertain or not sent)."""
        self.session.close(error)
        self.close()
        return error

    def _flush_and_close(self) -> None:
        # The engine may have queued a polite QUIT before reporting the error: best effort.
        if self._link is not None:
            self._link.flush(self.session.data_to_send())
        self.close()

    # -- shared steps --------------------------------------------------------------

    def _start(self, batch: Batch) -> Collector:
        """Queue the batch's messages (after the driver took in what the idle server sent)."""
        return Collector(self.session, queue_messages(self.session, batch.submissions()), batch.items)

    def _begin_quit(self) -> None:
        """Queue QUIT, unless the engine says goodbye already (quit_after) or has closed."""
        self._require_connection()
        if self.session.state not in (QUIT, CLOSED):
            self.session.quit()

    # -- what the pumps wait for (each returns the call's value, or GO_ON) -------------

    @staticmethod
    def _opened(event: SessionEvent) -> SessionReady | GoOn | None:
        """The session is open (its SessionReady) -- or closed already (None), when told to stop during
        setup (quit_after)."""
        return event if isinstance(event, SessionReady) else None if isinstance(event, Closed) else GO_ON

    @staticmethod
    def _answered(ticket: int) -> Until[Reply]:
        """The reply to the command with this ticket (NOOP, RSET)."""
        def done(event: SessionEvent) -> Reply | GoOn:
            return event.reply if isinstance(event, CommandDone) and event.ticket == ticket else GO_ON

        return done

    @staticmethod
    def _ended(event: SessionEvent) -> Reply | GoOn | None:
        """The end: the 221 that answered QUIT, or None when the server just closed."""
        return event.reply if isinstance(event, Closed) else GO_ON

    def _require_no_connection(self) -> None:
        if self._link is not None:
            raise LocalProtocolError("already connected")

    def _require_connection(self) -> None:
        # Checked before the engine is given work: a call that fails must queue nothing.
        if not self._is_connected():
            raise LocalProtocolError("not connected: use the client in a with block or call connect() first")

    def _context(self) -> ssl.SSLContext:
        if self.tls_context is None:
            self.tls_context = ssl.create_default_context()
        return self.tls_context

    def _peer_facts(self, sockname: Any, peername: Any) -> None:
        """Build the session that runs, now that the peer is known: loopback (for the AUTH rule)
        and the local address (the EHLO name, unless one was given)."""
        # None when the server reset the connection right after accepting it: the session
        # then reads the end of the connection and reports it (ServerDisconnected, greeting).
        loopback = is_loopback(str(peername[0])) if peername is not None else None
        name = ehlo_name(str(sockname[0])) if sockname is not None and self.options.ehlo_from_socket else None
        self.session = self._session_options.with_peer(loopback=loopback, local_hostname=name).new_session()

    def _closed(self) -> bool:
        """The session has ended (cleanly or not)."""
        return self.session.state in FINAL_STATES

    def _buffered(self) -> int:
        return bytes_buffered(self.session)

    def _reset_at_connect(self) -> ServerDisconnected:
        """The server accepted and reset at once, before connect() returned: as a reset before the
        greeting that lands a moment later (the same error whichever side of connect() it falls)."""
        state = self.session.state
        self.session.close()
        return ServerDisconnected("server closed the connection", None, state)

    def _connect_failed(self, exc: OSError) -> SMTPError:
        """The error for a connect that failed (a reset right after the accept is the server closing)."""
        if isinstance(exc, ConnectionResetError):
            return self._reset_at_connect()
        if isinstance(exc, TimeoutError):
            return SMTPConnectError(f"cannot connect to {self.host}:{self.port}: timed out after {self.timeout} s")
        return SMTPConnectError(f"cannot connect to {self.host}:{self.port}: {exc}")

    def _reply_timeout(self) -> float:
        """The deadline for the reply awaited now: ``data_timeout`` for the one to the end of data."""
        return self.data_timeout if self.session.awaiting == END_OF_DATA else self.timeout

    def _reply_timed_out(self) -> SMTPTimeout:
        """The timeout error, naming the reply that did not come (and which deadline it had)."""
        awaited = self.session.awaiting or "reply"
        if awaited == END_OF_DATA:
            return SMTPTimeout(f"no reply to the end of data within {self.data_timeout} s (data_timeout; "
                               f"the server may have the message) (in state {self.session.state!r})")
        what = "greeting" if awaited == "greeting" else f"reply to {awaited}"
        return SMTPTimeout(f"no {what} within {self.timeout} s (in state {self.session.state!r})")

    def _timed_out(self, *, writing: bool) -> SMTPTimeout:
        return self._write_timed_out() if writing else self._reply_timed_out()

    def _write_timed_out(self) -> SMTPTimeout:
        return SMTPTimeout(f"writing to {self.host}:{self.port}: no progress within {self.timeout} s "
                           f"(in state {self.session.state!r})")

    def _handshake_failed(self, exc: OSError) -> SMTPError:
        """The error a failed TLS handshake raises; the engine ends with it too (its trace and Closed say so)."""
        error: SMTPError
        if isinstance(exc, TimeoutError):
            error = TLSHandshakeTimeout(f"TLS handshake with {self.host}:{self.port} timed out")
        elif isinstance(exc, ssl.SSLError):
            error = TLSError(f"TLS handshake with {self.server_hostname} failed: {exc}")
        else:  # the server cut the handshake (a reset, or a close the TLS layer saw as EOF)
            error = TLSError(f"TLS handshake with {self.host}:{self.port} failed: {str(exc) or type(exc).__name__}")
        error.__cause__ = exc
        self.session.close(error)
        return error

    @staticmethod
    def _read_failed(exc: ssl.SSLError) -> TLSError:
        """The error for a TLS failure while reading (the driver abandons the connection with it)."""
        return TLSError(f"TLS error while reading: {exc}")

    def _refuse_on_ended_session(self, items: Sequence[object]) -> None:
        """Raise the session's error before new work: the server left (or said 421) while idle."""
        error = session_error(self.session)
        if error is not None:
            self._flush_and_close()
            error.completed, error.uncertain, error.unsent = (), (), tuple(items)
            raise error

    def _owes_quit(self) -> bool:
        """Leaving a with block: QUIT is owed on a connection still open and between replies."""
        return self._link is not None and not self._closed() and not self._buffered()


class Collector:
    """Reads events until the one a call waits for; keeps the results of ``send_many``."""

    def __init__(self, session: ClientSession, tickets: list[int], items: list[Any]) -> None:
        self.session = session
        self.tickets = tickets
        self.items = items
        self.waiting = set(tickets)
        self.results: dict[int, SendResult] = {}
        self.cut_short = False

    def take(self, event: SessionEvent) -> bool | GoOn:
        """Record ``event``; True when every awaited ticket is done and none was cut short.

        A message the session's end cut short comes just before that error: the pump
        goes on to raise it, so the caller sees the error with every message's fate.
        """
        if isinstance(event, MessageSent) and event.ticket in self.waiting:
            self.results[event.ticket] = event.result
            error = event.result.error
            if error is not None and error is session_error(self.session):
                self.cut_short = True
        return True if len(self.results) == len(self.waiting) and not self.cut_short else GO_ON

    def ordered(self) -> list[SendResult]:
        return [self.results[ticket] for ticket in self.tickets]

    def interrupted(self, error: SMTPError) -> SMTPError:
        """Attach every message's fate to the error that cut the call short (whatever the error).

        A driver's own error (a timeout, a TLS failure) leaves the engine unaware: closing it
        with that error settles each unfinished message, uncertain or not sent.
        """
        tickets, items = self.tickets, self.items
        self.session.close(error)
        for _ in range(len(tickets) + 2):  # each call takes one queued event; bounded
            try:
                event = self.session.next_event()
            except SMTPError:
                break
            if not isinstance(event, MessageSent):
                break
            self.take(event)
        done = (Outcome.DELIVERED, Outcome.REFUSED)
        fates = [self.results.get(ticket) for ticket in tickets]
        error.completed = tuple(result for result in fates if result is not None and result.outcome in done)
        error.uncertain = tuple(item for item, result in zip(items, fates, strict=True)
                                if result is not None and result.outcome is Outcome.UNCERTAIN)
        error.unsent = tuple(item for item, result in zip(items, fates, strict=True)
                             if result is None or result.outcome is Outcome.NOT_SENT)
        return error


#: DriverBase's API, and what each method returns (spelt for help() and the docs; mypy reads the generics).
API_RETURNS = {"sendmail": "SendResult", "send_message": "SendResult", "send_many": "list[SendResult]",
               "noop": "Reply", "rset": "Reply", "quit": "Reply | None"}


def install_api(cls: type[DriverBase[Any, Any, Any, Any]], *, awaited: bool) -> None:
    """Give ``cls`` DriverBase's API as its own methods: the same code (blocking: no extra frame), or
    coroutine functions that await it (asyncio: ``inspect.iscoroutinefunction`` and ``AsyncMock``
    see them as such), each with its return type spelt for ``cls`` in its signature."""
    for name, returns in API_RETURNS.items():
        function = getattr(DriverBase, name)
        method: Any
        if awaited:
            method = _awaiting(function)
        else:
            method = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__,
                                        function.__closure__)
            method.__kwdefaults__ = function.__kwdefaults__
        method.__doc__ = function.__doc__
        method.__annotations__ = {**function.__annotations__, "return": returns}
        method.__signature__ = inspect.signature(function).replace(return_annotation=returns)
        method.__name__, method.__qualname__, method.__module__ = name, f"{cls.__name__}.{name}", cls.__module__
        setattr(cls, name, method)


def _awaiting(function: Callable[..., Any]) -> Callable[..., Any]:
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await function(self, *args, **kwargs)

    return method




def reusable(to_addrs: str | Iterable[str]) -> str | Iterable[str]:
    """Recipients that can be read twice: a one-shot iterator becomes a tuple.

    The engine reads them once to queue the message, and an error may hand the item back in
    ``unsent`` for the caller to send again: an exhausted iterator would send to nobody.
    """
    return to_addrs if isinstance(to_addrs, str | Collection) else tuple(to_addrs)


def reusable_item(item: SendItem) -> SendItem:
    """A ``send_many`` item as given, unless its recipients are a one-shot iterator."""
    if isinstance(item, Message):
        return item
    sender, to_addrs, msg = item
    kept = reusable(to_addrs)
    return item if kept is to_addrs else (sender, kept, msg)


def message_item(msg: Message, from_addr: str | None, to_addrs: str | Iterable[str] | None) -> SendItem:
    """What ``send_message`` was given, as ``send_many`` would take it (for ``error.unsent``)."""
    if from_addr is None and to_addrs is None:
        return msg
    sender, recipients = envelope_from_headers(msg)
    return (from_addr if from_addr is not None else sender, to_addrs if to_addrs is not None else recipients, msg)


def single_result(result: SendResult) -> SendResult:
    """sendmail and send_message raise when the message went to nobody."""
    if result.error is not None:
        raise result.error
    return result
