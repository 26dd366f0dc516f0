"""Real aiosmtpd servers on 127.0.0.1 for tests, demos and benchmarks.

``LocalSMTPServer`` starts aiosmtpd in its own thread on a free loopback
port and keeps every message it receives, with its envelope.  It binds its
listening socket itself (port 0 unless a port is given) and hands it to
aiosmtpd, so servers started at once -- pytest-xdist workers -- never race for
a port (aiosmtpd's Controller would bind host:port again, after the choice).
Options switch on STARTTLS or implicit TLS, AUTH (PLAIN, LOGIN, CRAM-MD5,
XOAUTH2), SMTPUTF8, PIPELINING (aiosmtpd reads line by line, so only the
EHLO keyword is missing), LMTP, refused recipients and a size limit.
"""

from __future__ import annotations

import base64
import hmac
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from .._extras import missing
from .certificates import TestTLS, TLSCertificates, make_test_tls
from .ports import free_port

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    raise missing("smtp_fsm's local SMTP servers (LocalSMTPServer, the fixtures, smtp-fsm demo)", "aiosmtpd",
                  "server") from None

__all__ = ["LocalSMTPServer", "ReceivedMessage", "RecordingHandler", "TLSCertificates", "TestTLS", "free_port",
           "local_smtp_server",
           "make_test_tls"]



@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[tuple[str, ...], ...] = ()
    smtp_utf8: bool = False
    authenticated_as: str | None = None
    peer_tls: bool = False  # STARTTLS was used (aiosmtpd does not report implicit TLS)

    @property
    def message(self) -> EmailMessage:
        """The content parsed with the ``email`` package (the default policy)."""
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """aiosmtpd handler that stores messages and can refuse chosen recipients.

    ``refuse`` maps a recipient to the reply RCPT gets (e.g. ``"550 5.1.1 no such user"``);
    ``lmtp_refuse`` the same for LMTP delivery after DATA; ``data_reply`` replaces
    the final ``250`` (e.g. to refuse the content).
    """

    refuse: Mapping[str, str] = field(default_factory=dict)
    lmtp_refuse: Mapping[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    mail_reply: str | None = None
    pipelining: bool = False
    lmtp: bool = False
    credentials: Mapping[str, str] = field(default_factory=dict)
    messages: list[ReceivedMessage] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rcpt_options: list[tuple[str, ...]] = field(default_factory=list)

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        """aiosmtpd's EHLO hook: records the EHLO and adds PIPELINING to aiosmtpd's keywords when offered."""
        session.host_name = hostname
        self.commands.append(f"EHLO {hostname}")
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        """aiosmtpd's MAIL hook: records the sender and its parameters."""
        self.commands.append(f"MAIL {address}")
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self._rcpt_options = []
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        """aiosmtpd's RCPT hook: accepts, or refuses as ``refuse`` says."""
        self.commands.append(f"RCPT {address}")
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self._rcpt_options.append(tuple(rcpt_options))
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        """aiosmtpd's DATA hook: stores the message (LMTP: answers per recipient)."""
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        assert isinstance(content, bytes)
        received = ReceivedMessage(
            envelope.mail_from,
            tuple(envelope.rcpt_tos),
            content,
            tuple(envelope.mail_options),
            tuple(self._rcpt_options),
            bool(envelope.smtp_utf8),
            _login(session.auth_data),
            session.ssl is not None,
        )
        if self.data_reply is not None and not self.data_reply.startswith("2"):
            return self.data_reply
        with self._lock:
            self.messages.append(received)
        number = len(self.messages)
        if self.lmtp:
            replies = [self.lmtp_refuse.get(rcpt, f"250 2.0.0 <{rcpt}> delivered as {number}")
                       for rcpt in envelope.rcpt_tos]
            return "\r\n".join(replies)
        return self.data_reply or f"250 2.0.0 OK queued as {number}"

    # SASL mechanisms that aiosmtpd does not build in (its docs: auth_* handler methods).
    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        """AUTH CRAM-MD5 (RFC 2195), checked against ``credentials``."""
        challenge = f"<{threading.get_ident()}.{len(self.messages)}@smtp-fsm.test>".encode()
        answer = await server.challenge_auth(challenge, encode_to_b64=True)
        if not isinstance(answer, bytes):
            return AuthResult(success=False, handled=False)
        user, _, digest = answer.decode().rpartition(" ")
        secret = self.credentials.get(user)
        expected = hmac.new(secret.encode(), challenge, "md5").hexdigest() if secret else ""
        ok = bool(secret) and hmac.compare_digest(expected, digest)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user.encode(), b""))

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """AUTH XOAUTH2: the token is accepted when it equals the user's password."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1]).decode()
        parts = dict(part.split("=", 1) for part in raw.split("\x01") if "=" in part)
        user, token = parts.get("user", ""), parts.get("auth", "").removeprefix("Bearer ")
        if self.credentials.get(user) == token and token:
            return AuthResult(success=True, handled=False, auth_data=LoginPassword(user.encode(), b""))
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await server.push(f"334 {error}")
        await server._reader.readline()  # the client's empty line
        return AuthResult(success=False, handled=False)

    def authenticate(self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator for PLAIN and LOGIN, against ``credentials``."""
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.credentials.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


def _login(auth_data: Any) -> str | None:
    login = getattr(auth_data, "login", None)
    return login.decode() if isinstance(login, bytes) else login


class _BoundController(Controller):
    """aiosmtpd's Controller serving a socket bound beforehand (aiosmtpd documents ``_create_server``
    as the method subclasses override to bind the listener)."""

    def __init__(self, handler: Any, *, sock: socket.socket, **kwargs: Any) -> None:
        self.listening_socket = sock
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self.listening_socket, ssl=self.ssl_context)


class _LMTPController(_BoundController):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: the kernel picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class LocalSMTPServer:
    """An aiosmtpd server on 127.0.0.1 (or ``host``) that keeps what it receives.

    Use as a context manager, or ``start()`` / ``stop()``.  ``messages`` lists
    what arrived; ``host`` and ``port`` say where it listens.
    """

    def __init__(
        self,
        *,
        handler: RecordingHandler | None = None,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        credentials: Mapping[str, str] | None = None,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        smtputf8: bool = False,
        lmtp: bool = False,
        pipelining: bool = False,
        data_size_limit: int | None = 33554432,
        hostname: str = "mx.smtp-fsm.test",
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.handler = handler or RecordingHandler()
        self.handler.pipelining = self.handler.pipelining or pipelining
        self.handler.lmtp = lmtp
        if credentials is not None:
            self.handler.credentials = dict(credentials)
        self.host = host  # any 127.0.0.0/8 address: several servers can share one port on different ones
        self._socket = _listening_socket(host, port or 0)
        self.port: int = self._socket.getsockname()[1]
        kwargs: dict[str, Any] = {
            "data_size_limit": data_size_limit,
            "enable_SMTPUTF8": smtputf8,
            "tls_context": starttls_context,
            "require_starttls": require_starttls,
            "auth_required": auth_required,
            "auth_require_tls": auth_require_tls,
        }
        if credentials is not None:
            kwargs["authenticator"] = self.handler.authenticate
        controller_cls = _LMTPController if lmtp else _BoundController
        self._controller = controller_cls(
            self.handler, sock=self._socket, ssl_context=implicit_tls_context, server_hostname=hostname, **kwargs,
        )

    @property
    def messages(self) -> list[ReceivedMessage]:
        """What the server received, in order (``ReceivedMessage``)."""
        return self.handler.messages

    def start(self) -> LocalSMTPServer:
        """Start listening (in aiosmtpd's own thread); returns self."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        try:
            self._controller.stop()
        finally:
            self._socket.close()  # (the server closed it already; a server never started had not)

    def __enter__(self) -> LocalSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def local_smtp_server(**options: Any) -> Iterator[LocalSMTPServer]:
    """A started ``LocalSMTPServer`` for a ``with`` block; stopped at its end."""
    server = LocalSMTPServer(**options)
    with server:
        yield server
