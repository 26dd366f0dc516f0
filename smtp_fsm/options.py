"""The settings as objects, checked once: ``SessionOptions`` (the engine's) and ``ClientOptions`` (a driver's).

``ClientSession`` and both drivers take the same session keywords; each builds
one ``SessionOptions`` from them, and the checks live here only, so a bad
keyword raises the same ``LocalProtocolError`` before any byte exists
whichever entry point it came through.  A driver's constructor builds one
``ClientOptions`` (where to connect, deadlines, TLS, and its ``SessionOptions``)
before connecting; at connect time it copies the session's with the two facts
only the connection knows: whether the peer is loopback, and our address for
EHLO (``with_peer``).  Code that makes many clients alike (the command line,
MX delivery) builds the options once and calls ``SMTPClient.from_options``.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .auth import Credentials, choose_mechanism
from .commands import check_ehlo_name
from .errors import LocalProtocolError
from .protocol.rules import STOP_POINTS
from .transaction import credentials_from

StartTLSPolicy = Literal["opportunistic", "required", "never"]
STARTTLS_POLICIES: tuple[StartTLSPolicy, ...] = ("opportunistic", "required", "never")
#: Where ``quit_after`` stops a session (swaks' ``--quit-after``): after the greeting, the first
#: EHLO, the TLS handshake, AUTH, MAIL FROM (a probe of the sender) or the RCPT TOs (of recipients).
QuitAfter = Literal["banner", "ehlo", "tls", "auth", "mail", "rcpt"]
DEFAULT_CHUNK_SIZE = 1 << 20
#: Messages a connection keeps in flight when the server offers PIPELINING and CHUNKING (``bdat_window``):
#: each message's MAIL, RCPT and BDAT ... LAST follow the one before without waiting.  A lost connection
#: can leave up to this many messages ``uncertain``.  Four keeps Exim's default limit: it drops the
#: connection at its fourth protocol error, and behind a refused message that Exim keeps open, at most
#: three messages are in flight before its first 503 makes the window one (README, the BDAT window).
DEFAULT_BDAT_WINDOW = 4
MAX_BDAT_WINDOW = 64

if TYPE_CHECKING:
    import ssl

    from .session import ClientSession

SMTP_PORT = 25
SUBMISSIONS_PORT = 465  # RFC 8314 implicit TLS
LMTP_PORT = 24
#: The address families a driver may be limited to; 0 (AF_UNSPEC) takes whatever the name resolves to.
FAMILIES = frozenset({socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """Every setting of one session, checked when made; the same meaning as ``ClientSession``'s keywords.

    ``SessionOptions(local_hostname="client.example", lmtp=True)`` is what
    ``ClientSession(local_hostname="client.example", lmtp=True)`` builds; ``new_session()``
    makes sessions alike from one.  The password and
    token are left out of its ``repr``.
    """

    #: The EHLO/LHLO name: a domain, or our address as a literal (``ehlo_name(sock)``).
    local_hostname: str
    #: Speak LMTP (RFC 2033): LHLO, and one delivery reply per accepted recipient.
    lmtp: bool = False
    #: The transport is already TLS (implicit TLS): no STARTTLS, and AUTH may go ahead.
    encrypted: bool = False
    #: The peer is a loopback address (AUTH in the clear is allowed there).
    loopback: bool = False
    #: "opportunistic" (upgrade when offered), "required" (else TLSUnavailable) or "never".
    starttls: StartTLSPolicy = "opportunistic"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: A bearer token for XOAUTH2 (with ``username``).
    oauth_token: str | None = field(default=None, repr=False)
    #: Force one AUTH mechanism (PLAIN, LOGIN, CRAM-MD5, XOAUTH2); by default the best offered.
    auth_mechanism: str | None = None
    #: Allow AUTH over an unencrypted link to a peer that is not loopback (never by default).
    allow_insecure_auth: bool = False
    #: Pipeline commands (RFC 2920) when the server offers PIPELINING.
    pipelining: bool = True
    #: Send content with BDAT (RFC 3030) when the server offers CHUNKING.
    chunking: bool = True
    #: The largest BDAT chunk, in octets.
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: With PIPELINING and CHUNKING, up to this many messages in flight at once (1: one at a time).
    bdat_window: int = DEFAULT_BDAT_WINDOW
    #: Stop the session at this point with QUIT (``QuitAfter``).
    quit_after: QuitAfter | None = None
    #: Record every step (``ClientSession.trace``).
    trace: bool = False
    #: The credentials, checked (None without a username); derived, not a keyword.
    credentials: Credentials | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.starttls not in STARTTLS_POLICIES:
            raise LocalProtocolError(f"starttls must be one of {STARTTLS_POLICIES}, not {self.starttls!r}")
        if self.quit_after is not None and self.quit_after not in STOP_POINTS:
            raise LocalProtocolError(f"quit_after must be one of {STOP_POINTS} or None, not {self.quit_after!r}")
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise LocalProtocolError(f"chunk_size must be a positive number of octets, not {size!r}")
        window = self.bdat_window
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_BDAT_WINDOW:
            raise LocalProtocolError(f"bdat_window must be a number of messages from 1 to {MAX_BDAT_WINDOW}, "
                                     f"not {window!r}")
        if not isinstance(self.local_hostname, str):
            raise LocalProtocolError(f"local_hostname must be the EHLO name (a domain, or ehlo_name(sock)), "
                                     f"not {self.local_hostname!r}")
        check_ehlo_name(self.local_hostname)
        # frozen: the derived and normalised fields are set through object.__setattr__, once, here
        object.__setattr__(self, "credentials", credentials_from(self.username, self.password, self.oauth_token))
        if self.auth_mechanism:
            mechanism = self.auth_mechanism.upper()
            choose_mechanism((), Credentials(""), mechanism)  # an unknown name raises
            object.__setattr__(self, "auth_mechanism", mechanism)
        else:
            object.__setattr__(self, "auth_mechanism", None)

    def new_session(self) -> ClientSession:
        """A new ``ClientSession`` with these settings (not checked again)."""
        from .session import session_from_options  # (session.py imports this module)

        return session_from_options(self)

    def with_peer(self, *, loopback: bool | None = None, local_hostname: str | None = None) -> SessionOptions:
        """A copy with what the connection told (None leaves a setting as it is), checked again."""
        changes: dict[str, object] = {}
        if loopback is not None:
            changes["loopback"] = loopback
        if local_hostname is not None:
            changes["local_hostname"] = local_hostname
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """A driver's settings: where to connect, how long to wait, TLS, and the session's ``SessionOptions``.

    The same meaning as the drivers' keywords; ``port`` None means 25 (465 with ``tls``,
    24 with LMTP: ``connect_port``) and ``server_hostname`` None means ``host``
    (``tls_server_name``), worked out from the fields as they are, so a copy made with
    ``dataclasses.replace`` (checked again) derives them anew; with ``tls`` the session
    starts encrypted.  A driver's constructor builds one from its keywords;
    ``SMTPClient.from_options`` takes one made here.
    """

    host: str
    session: SessionOptions
    port: int | None = None
    #: The deadline for each complete reply, and for the connect and the TLS handshake.
    timeout: float = 60.0
    #: The deadline for the reply to the end of a message's data (RFC 5321 §4.5.3.2.6: 10 minutes,
    #: since giving up earlier is what turns a delivered message into a duplicate when sent again).
    data_timeout: float = 600.0
    #: ``socket.AF_INET``, ``socket.AF_INET6``, or 0 (either).
    family: socket.AddressFamily = socket.AF_UNSPEC
    #: ``(host, port)`` to bind before connecting (port 0: any).
    source_address: tuple[str, int] | None = None
    #: Implicit TLS (RFC 8314) from the first byte.
    tls: bool = False
    tls_context: ssl.SSLContext | None = None
    #: The name for SNI and the certificate check.
    server_hostname: str | None = None
    #: EHLO says our address on the connection, known at connect, instead of ``session.local_hostname``
    #: (the drivers set it when no ``local_hostname`` was given).
    ehlo_from_socket: bool = False

    def __post_init__(self) -> None:
        if not self.host or not isinstance(self.host, str):
            raise LocalProtocolError(f"host must be a host name or address, not {self.host!r}")
        port = self.port
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise LocalProtocolError(f"port must be a number from 1 to 65535, not {port!r}")
        for value, name in ((self.timeout, "timeout"), (self.data_timeout, "data_timeout")):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise LocalProtocolError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.tls_context is not None:
            import ssl  # (the drivers have loaded it already)

            if not isinstance(self.tls_context, ssl.SSLContext):
                raise LocalProtocolError("tls_context must be an ssl.SSLContext")
        if self.server_hostname:  # None or "" falls back to host
            check_server_hostname(self.server_hostname)
        family = self.family
        # bool is an int, and False == AF_UNSPEC: refused so that a flag passed by mistake says so.
        if isinstance(family, bool) or not isinstance(family, int) or family not in FAMILIES:
            raise LocalProtocolError(f"family must be socket.AF_INET, socket.AF_INET6 or 0 (either), not {family!r}")
        if not isinstance(self.session, SessionOptions):
            raise LocalProtocolError(f"session must be SessionOptions, not {type(self.session).__name__}")
        # port and server_hostname stay as given (None: derived below), so that a copy made with
        # dataclasses.replace(options, host=..., tls=...) derives them anew.
        object.__setattr__(self, "family", socket.AddressFamily(family))
        object.__setattr__(self, "source_address", check_source_address(self.source_address, family))
        object.__setattr__(self, "timeout", float(self.timeout))
        object.__setattr__(self, "data_timeout", float(self.data_timeout))

    @property
    def connect_port(self) -> int:
        """The port to connect to: ``port``, else 465 with ``tls``, 24 with LMTP, 25."""
        if self.port is not None:
            return self.port
        return SUBMISSIONS_PORT if self.tls else (LMTP_PORT if self.session.lmtp else SMTP_PORT)

    @property
    def tls_server_name(self) -> str:
        """The name for SNI and the certificate check: ``server_hostname``, else ``host``."""
        return self.server_hostname or self.host

    @property
    def session_options(self) -> SessionOptions:
        """The session's settings as the connection makes them: encrypted from the start with ``tls``."""
        session = self.session
        return session if session.encrypted == self.tls else dataclasses.replace(session, encrypted=self.tls)


#: The keywords SessionOptions takes (``credentials`` is derived).
SESSION_KEYWORDS = tuple(f.name for f in dataclasses.fields(SessionOptions) if f.init)


def session_options(keywords: Mapping[str, Any]) -> SessionOptions:
    """SessionOptions from a constructor's ``locals()``: its signature is then the only list of the keywords."""
    return SessionOptions(**{name: keywords[name] for name in SESSION_KEYWORDS if name in keywords})


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
    version = ip_version(host)
    wanted = 4 if family == socket.AF_INET else 6 if family == socket.AF_INET6 else 0
    if version and wanted and version != wanted:
        raise LocalProtocolError(f"source_address {host} is an IPv{version} address, "
                                 f"but the connection is limited to IPv{wanted}")
    return host, port


def ip_version(host: str) -> int:
    """4 or 6 for an address literal (a zone index allowed), 0 for a name."""
    import ipaddress  # (drivers only)

    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).version
    except ValueError:
        return 0


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is a loopback address (127.0.0.0/8, ::1); False for a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


__all__ = [
    "DEFAULT_BDAT_WINDOW",
    "DEFAULT_CHUNK_SIZE",
    "MAX_BDAT_WINDOW",
    "STARTTLS_POLICIES",
    "ClientOptions",
    "QuitAfter",
    "SessionOptions",
    "StartTLSPolicy",
]
