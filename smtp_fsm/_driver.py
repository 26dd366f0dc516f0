"""What the blocking and the asyncio driver share: options, peer facts, and reading events.

The drivers only move bytes.  This module holds the parts of that job that
do not depend on how bytes move: validating the constructor's keywords (so
bad arguments raise before a connection is made), telling the engine the
facts it cannot know (loopback peer, encrypted transport, our address for
EHLO), and turning the engine's events into return values and exceptions.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from email.message import Message
from typing import Any

from .errors import LocalProtocolError, SMTPError
from .events import Closed, CommandDone, Event, MessageSent, SessionReady
from .extensions import Capabilities
from .replies import Reply
from .results import SendResult
from .session import DEFAULT_CHUNK_SIZE, STARTTLS_POLICIES, ClientSession, StartTLSPolicy
from .trace import TraceStep

SMTP_PORT = 25
SUBMISSIONS_PORT = 465  # RFC 8314 implicit TLS
LMTP_PORT = 24

SendItem = Message | tuple[str, str | Iterable[str], bytes | str | Message]


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3 address literal for EHLO: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    return f"[IPv6:{addr}]" if addr.version == 6 else f"[{addr}]"


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
        trace: bool = False,
    ) -> None:
        if not host:
            raise LocalProtocolError("host must not be empty")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise LocalProtocolError(f"port must be a number from 1 to 65535, not {port!r}")
        if timeout is None or timeout <= 0:
            raise LocalProtocolError("timeout must be a positive number of seconds")
        if starttls not in STARTTLS_POLICIES:
            raise LocalProtocolError(f"starttls must be one of {STARTTLS_POLICIES}, not {starttls!r}")
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise LocalProtocolError("tls_context must be an ssl.SSLContext")
        self.host = host
        self.port = port if port is not None else (SUBMISSIONS_PORT if tls else (LMTP_PORT if lmtp else SMTP_PORT))
        self.timeout = float(timeout)
        self.tls = tls
        self.tls_context = tls_context
        self.server_hostname = server_hostname or host
        # The session is built now so that every invalid keyword raises before connecting.
        self.session = ClientSession(
            local_hostname=local_hostname,
            lmtp=lmtp,
            encrypted=tls,
            starttls=starttls,
            username=username,
            password=password,
            oauth_token=oauth_token,
            auth_mechanism=auth_mechanism,
            allow_insecure_auth=allow_insecure_auth,
            pipelining=pipelining,
            chunking=chunking,
            chunk_size=chunk_size,
            trace=trace,
        )
        self._local_hostname_given = local_hostname is not None
        self.ready: SessionReady | None = None

    @property
    def capabilities(self) -> Capabilities:
        """The parsed answer to the last EHLO (after STARTTLS, the second one)."""
        return self.session.capabilities

    @property
    def trace(self) -> list[TraceStep]:
        """The recorded steps (empty unless the client was made with ``trace=True``)."""
        return list(self.session.trace or [])

    def _is_connected(self) -> bool:
        raise NotImplementedError

    def _require_connection(self) -> None:
        # Checked before the engine is given work: a call that fails must queue nothing.
        if not self._is_connected():
            raise LocalProtocolError("not connected: use the client in a with block or call connect() first")

    def _context(self) -> ssl.SSLContext:
        if self.tls_context is None:
            self.tls_context = ssl.create_default_context()
        return self.tls_context

    def _peer_facts(self, sockname: Any, peername: Any) -> None:
        self.session.loopback = is_loopback(str(peername[0]))
        if not self._local_hostname_given:
            self.session.local_hostname = address_literal(str(sockname[0]))


class Collector:
    """Reads events until the one a call waits for; keeps the results of ``send_many``."""

    def __init__(self, tickets: Iterable[int] = ()) -> None:
        self.waiting = set(tickets)
        self.results: dict[int, SendResult] = {}

    def take(self, event: Event) -> bool:
        """Record ``event``; True when every awaited ticket is done."""
        if isinstance(event, MessageSent) and event.ticket in self.waiting:
            self.results[event.ticket] = event.result
        return len(self.results) == len(self.waiting)

    def ordered(self, tickets: list[int]) -> list[SendResult]:
        return [self.results[ticket] for ticket in tickets]

    def interrupted(self, error: SMTPError, tickets: list[int]) -> SMTPError:
        """Attach what completed to the error that cut a batch short (whatever the error)."""
        error.completed = tuple(self.results[t] for t in tickets if t in self.results)
        error.unsent = len(tickets) - len(error.completed)
        return error


def wait_ready(event: Event) -> bool:
    return isinstance(event, SessionReady)


def wait_command(ticket: int) -> Any:
    def done(event: Event) -> bool:
        return isinstance(event, CommandDone) and event.ticket == ticket

    return done


def wait_closed(event: Event) -> bool:
    return isinstance(event, Closed)


def command_reply(event: Event) -> Reply:
    assert isinstance(event, CommandDone)
    return event.reply


def single_result(result: SendResult) -> SendResult:
    """sendmail and send_message raise when the message went to nobody."""
    if result.error is not None:
        raise result.error
    return result
