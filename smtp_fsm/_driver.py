"""What the blocking and the asyncio driver share: options, peer facts, and reading events.

The drivers only move bytes.  This module holds the parts of that job that
do not depend on how bytes move: validating the constructor's keywords (so
bad arguments raise before a connection is made), telling the engine the
facts it cannot know (loopback peer, encrypted transport, our address for
EHLO), and turning the engine's events into return values and exceptions.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
from collections.abc import Collection, Iterable
from email.message import Message
from typing import Any

from ._model import DEFAULT_CHUNK_SIZE
from .errors import LocalProtocolError, ServerDisconnected, SMTPError, SMTPTimeout, TLSError, TLSHandshakeTimeout
from .events import Closed, CommandDone, MessageSent, SessionEvent, SessionReady
from .extensions import Capabilities
from .message import envelope_from_headers
from .protocol.table import CLOSED, FINAL_STATES, QUIT
from .replies import Reply
from .results import Outcome, SendResult
from .session import (
    END_OF_DATA,
    STARTTLS_POLICIES,
    ClientSession,
    QuitAfter,
    StartTLSPolicy,
    bytes_buffered,
    ehlo_name,
    session_error,
)
from .trace import TraceStep

SMTP_PORT = 25
SUBMISSIONS_PORT = 465  # RFC 8314 implicit TLS
LMTP_PORT = 24

SendItem = Message | tuple[str, str | Iterable[str], bytes | str | Message]

#: The address families a driver may be limited to; 0 (AF_UNSPEC) takes whatever the name resolves to.
FAMILIES = frozenset({socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6})


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


def check_server_hostname(name: object) -> None:
    """The name for SNI and the certificate check, refused here rather than as a ValueError mid-handshake."""
    if not isinstance(name, str) or not name or name.startswith(".") or any(c <= " " or c == "\x7f" for c in name):
        raise LocalProtocolError(f"server_hostname must be a host name or address, not {name!r}")
    try:
        name.encode("idna")  # what the ssl module does with it before the handshake
    except UnicodeError as exc:
        raise LocalProtocolError(f"server_hostname {name!r} is not a valid host name: {exc}") from None


def check_source_address(source_address: object, family: int) -> tuple[str, int] | None:
    """``(host, port)`` to bind before connecting (port 0: any), checked before any connection is made.

    An address literal of the other family than ``family`` is refused here: binding it could only fail,
    later and with a less clear message.
    """
    if source_address is None:
        return None
    if not isinstance(source_address, tuple | list) or len(source_address) != 2:
        raise LocalProtocolError(f"source_address must be a (host, port) pair, not {source_address!r}")
    host, port = source_address
    if not isinstance(host, str) or not host or any(c <= " " or c == "\x7f" for c in host):
        raise LocalProtocolError(f"source_address needs a local address or host name, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise LocalProtocolError(f"source_address port must be a number from 0 (any) to 65535, not {port!r}")
    version: int
    try:
        version = ipaddress.ip_address(host.split("%", 1)[0]).version
    except ValueError:
        version = 0  # a name: resolved when connecting
    wanted = 4 if family == socket.AF_INET else 6 if family == socket.AF_INET6 else 0
    if version and wanted and version != wanted:
        raise LocalProtocolError(f"source_address {host} is an IPv{version} address, "
                                 f"but the connection is limited to IPv{wanted}")
    return host, port


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class DriverBase:
    """Constructor keywords and event handling common to SMTPClient and AsyncSMTPClient."""

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
        quit_after: QuitAfter | None = None,
        trace: bool = False,
    ) -> None:
        if not host:
            raise LocalProtocolError("host must not be empty")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise LocalProtocolError(f"port must be a number from 1 to 65535, not {port!r}")
        for value, name in ((timeout, "timeout"), (data_timeout, "data_timeout")):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise LocalProtocolError(f"{name} must be a positive number of seconds, not {value!r}")
        if starttls not in STARTTLS_POLICIES:
            raise LocalProtocolError(f"starttls must be one of {STARTTLS_POLICIES}, not {starttls!r}")
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise LocalProtocolError("tls_context must be an ssl.SSLContext")
        if server_hostname:  # None or "" falls back to host, as before
            check_server_hostname(server_hostname)
        # bool is an int, and False == AF_UNSPEC: refused so that a flag passed by mistake says so.
        if isinstance(family, bool) or not isinstance(family, int) or family not in FAMILIES:
            raise LocalProtocolError(f"family must be socket.AF_INET, socket.AF_INET6 or 0 (either), not {family!r}")
        self.family = socket.AddressFamily(family)
        self.source_address = check_source_address(source_address, self.family)
        self.host = host
        self.port = port if port is not None else (SUBMISSIONS_PORT if tls else (LMTP_PORT if lmtp else SMTP_PORT))
        self.timeout = float(timeout)
        #: RFC 5321 §4.5.3.2.6: the reply to the end of the data gets 10 minutes, since giving
        #: up earlier is what turns a delivered message into a duplicate when it is sent again.
        self.data_timeout = float(data_timeout)
        self.tls = tls
        self.tls_context = tls_context
        self.server_hostname = server_hostname or host
        # Every invalid keyword raises now, before connecting: this session checks them all.
        # The one that runs is built at connect time with the peer's facts (_peer_facts).
        self._session_options: dict[str, Any] = dict(
            local_hostname=local_hostname or "[127.0.0.1]", lmtp=lmtp, encrypted=tls, starttls=starttls,
            username=username, password=password, oauth_token=oauth_token, auth_mechanism=auth_mechanism,
            allow_insecure_auth=allow_insecure_auth, pipelining=pipelining, chunking=chunking,
            chunk_size=chunk_size, quit_after=quit_after, trace=trace,
        )
        self.session = ClientSession(**self._session_options)
        # Without a name given, EHLO says our address on the connection (ehlo_name), known at connect.
        self._ehlo_from_socket = not local_hostname
        self.ready: SessionReady | None = None
        #: The connection is TLS now (implicit TLS, or after STARTTLS's handshake).
        self.encrypted = False

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

    def _is_connected(self) -> bool:
        raise NotImplementedError

    def _begin_quit(self) -> None:
        """Queue QUIT, unless the engine says goodbye already (quit_after) or has closed."""
        self._require_connection()
        if self.session.state not in (QUIT, CLOSED):
            self.session.quit()

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
        options = dict(self._session_options)
        # None when the server reset the connection right after accepting it: the session
        # then reads the end of the connection and reports it (ServerDisconnected, greeting).
        if peername is not None:
            options["loopback"] = is_loopback(str(peername[0]))
        if sockname is not None and self._ehlo_from_socket:
            options["local_hostname"] = ehlo_name(str(sockname[0]))
        self.session = ClientSession(**options)

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

    def _refuse_on_ended_session(self, items: list[Any]) -> None:
        """Raise the session's error before new work: the server left (or said 421) while idle."""
        error = session_error(self.session)
        if error is not None:
            error.completed, error.uncertain, error.unsent = (), (), tuple(items)
            raise error


class Collector:
    """Reads events until the one a call waits for; keeps the results of ``send_many``."""

    def __init__(self, session: ClientSession, tickets: Iterable[int] = ()) -> None:
        self.session = session
        self.waiting = set(tickets)
        self.results: dict[int, SendResult] = {}
        self.cut_short = False

    def take(self, event: SessionEvent) -> bool:
        """Record ``event``; True when every awaited ticket is done and none was cut short.

        A message the session's end cut short comes just before that error: the pump
        goes on to raise it, so the caller sees the error with every message's fate.
        """
        if isinstance(event, MessageSent) and event.ticket in self.waiting:
            self.results[event.ticket] = event.result
            error = event.result.error
            if error is not None and error is session_error(self.session):
                self.cut_short = True
        return len(self.results) == len(self.waiting) and not self.cut_short

    def ordered(self, tickets: list[int]) -> list[SendResult]:
        return [self.results[ticket] for ticket in tickets]

    def interrupted(self, error: SMTPError, tickets: list[int], items: list[Any]) -> SMTPError:
        """Attach every message's fate to the error that cut the call short (whatever the error).

        A driver's own error (a timeout, a TLS failure) leaves the engine unaware: closing it
        with that error settles each unfinished message, uncertain or not sent.
        """
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


def wait_ready(event: SessionEvent) -> bool:
    """The session is open -- or closed already, when told to stop during setup (quit_after)."""
    return isinstance(event, SessionReady | Closed)


def ready_event(event: SessionEvent) -> SessionReady | None:
    return event if isinstance(event, SessionReady) else None


def wait_command(ticket: int) -> Any:
    def done(event: SessionEvent) -> bool:
        return isinstance(event, CommandDone) and event.ticket == ticket

    return done


def wait_closed(event: SessionEvent) -> bool:
    return isinstance(event, Closed)


def command_reply(event: SessionEvent) -> Reply:
    assert isinstance(event, CommandDone)
    return event.reply


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
