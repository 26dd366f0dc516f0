"""``smtp-fsm serve``: a local SMTP or LMTP server to try things against, from a shell or in a lecture.

aiosmtpd speaks the protocol.  The testing toolkit's ``RecordingHandler`` answers EHLO (PIPELINING),
MAIL, RCPT and AUTH (PLAIN, LOGIN, CRAM-MD5), and ``make_test_tls`` makes the certificates.  This module
adds what a server left running in a terminal needs and the toolkit's ``LocalSMTPServer`` (a random port on
127.0.0.1, every message kept in memory) does not do: a chosen address and port, recipients refused by
pattern, AUTH without TLS decided per client, each message printed or stored in a Maildir as it arrives,
and a clean stop on Ctrl-C or SIGTERM.

aiosmtpd and trustme are imported only when the command runs, so ``import smtp_fsm.cli`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import io
import ipaddress
import logging
import mailbox
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult

    from .testing.servers import ReceivedMessage, RecordingHandler

PROG = "smtp-fsm"  # cli.PROG: cli imports this module, so this module cannot import cli when it loads
DEFAULT_PORT = 2525
EXIT_OK = 0
EXIT_USAGE = 2
#: The printed summary shows this many lines of the message text, each cut to _LINE_WIDTH characters.
_BODY_LINES = 10
_LINE_WIDTH = 200
_DATA_SIZE_LIMIT = 32 * 1024 * 1024
#: Names the server certificate is made for; clients connect to one of these (or to --listen's host).
_CERT_NAMES = ("127.0.0.1", "localhost", "::1")
#: Controller.stop() joins the server thread; a client stuck mid-command must not hold the exit longer.
_STOP_TIMEOUT = 5.0

AIOSMTPD_MISSING = f"{PROG} serve needs aiosmtpd, which is not installed: pip install 'smtp_fsm[server]'"
TRUSTME_MISSING = (f"{PROG} serve --starttls/--tls needs trustme to make its certificates, which is not "
                   "installed: pip install 'smtp_fsm[server]'")


def _usage_error(message: str) -> Exception:
    """cli's UsageError (exit 2, one line), imported late: cli imports this module while it loads."""
    from .cli import UsageError

    return UsageError(message)


def _say(text: str) -> None:
    # Flushed at once: whoever reads the output (a terminal, a pipe, a test) sees each line as it happens.
    print(text, flush=True)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- arguments ---------------------------------------------------------------------------------


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free port), not {text!r}")
    return int(text)


def _listen(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``; a bare IPv6 address has no port."""
    host, port = text, None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError("write an IPv6 address as [::1] or [::1]:2525")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise argparse.ArgumentTypeError("empty host")
    return host, None if port is None else _port(port)


def _credential(text: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise argparse.ArgumentTypeError("write a login as USER:PASSWORD (the password may hold colons)")
    return user, password


@dataclass(frozen=True)
class ServeConfig:
    """What ``smtp-fsm serve`` was asked for, checked."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    refuse: tuple[str, ...] = ()
    credentials: dict[str, str] = field(default_factory=dict)
    starttls: bool = False
    tls: bool = False
    lmtp: bool = False
    pipelining: bool = False
    maildir: Path | None = None
    ca_out: Path | None = None
    beyond_loopback: bool = False  # some address it listens on is not a loopback one (--public)

    @property
    def where(self) -> str:
        return _where(self.host, self.port)


def _is_loopback_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    # A dual-stack socket shows an IPv4 client as ::ffff:127.0.0.1, which ipaddress does not call loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _addresses(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _usage_error(f"--listen: cannot resolve {host!r}: {exc}") from None
    return [str(info[4][0]) for info in infos]


def _config(args: argparse.Namespace) -> ServeConfig:
    host, listen_port = args.listen
    if listen_port is not None and args.port is not None and listen_port != args.port:
        raise _usage_error(f"two ports: {listen_port} in --listen and --port {args.port}; give one")
    port = next((p for p in (listen_port, args.port) if p is not None), DEFAULT_PORT)
    # A name may stand for several addresses: every one of them must be loopback.
    beyond_loopback = not all(_is_loopback_ip(address) for address in _addresses(host))
    if beyond_loopback and not args.public:
        raise _usage_error(f"{host} is not a loopback address, so anyone who can reach it could send mail "
                           "here; add --public to listen there anyway")
    if args.ca_out is not None and not (args.starttls or args.tls):
        raise _usage_error("--ca-out needs --starttls or --tls (without TLS there is no certificate)")
    return ServeConfig(host, port, tuple(args.refuse), dict(args.auth), args.starttls, args.tls, args.lmtp,
                       args.pipelining, args.maildir, args.ca_out, beyond_loopback)


def _missing_dependency(cfg: ServeConfig) -> str | None:
    """A line naming what to install, or None when everything the options need is there."""
    needed = [("aiosmtpd", AIOSMTPD_MISSING)]
    if cfg.starttls or cfg.tls:
        needed.append(("trustme", TRUSTME_MISSING))
    for module, message in needed:
        try:
            importlib.import_module(module)
        except ImportError:
            return message
    return None


# -- what happens to a message ------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One message as it arrived, with where it came from."""

    number: int
    received: ReceivedMessage
    peer: str
    security: str  # "plain text", "STARTTLS" or "TLS"

    @property
    def heading(self) -> str:
        details = [self.security]
        if self.received.authenticated_as is not None:
            details.append(f"authenticated as {_printable(self.received.authenticated_as)}")
        details.append(f"{len(self.received.content)} octets")
        return f"message {self.number} from {self.peer} ({', '.join(details)})"


Sink = Callable[[Arrival], None]


def _printable(text: str) -> str:
    """``text`` with control characters escaped: what a client sends must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == "\t" else ascii(char)[1:-1] for char in text)


def _envelope_lines(received: ReceivedMessage) -> list[str]:
    options = "".join(f" {option}" for option in received.mail_options)
    lines = [f"MAIL FROM:<{received.mail_from}>{options}"]
    lines += [f"RCPT TO:<{rcpt}>" for rcpt in received.rcpt_tos]
    return [_printable(line) for line in lines]


def _cut(lines: list[str]) -> list[str]:
    shown = [_printable(line[:_LINE_WIDTH]) for line in lines[:_BODY_LINES]]
    if len(lines) > _BODY_LINES:
        shown.append(f"[... {len(lines) - _BODY_LINES} more lines]")
    return shown


def _raw_text(content: bytes) -> list[str]:
    return content.decode("utf-8", "replace").splitlines()


def _content_lines(received: ReceivedMessage) -> list[str]:
    """The headers (decoded), the first lines of the text and a line per attachment."""
    try:
        msg = received.message
        headers = [_printable(f"{name}: {value}") for name, value in msg.items()]
        part = msg.get_body(preferencelist=("plain",))
        if part is not None:
            text = str(part.get_content()).splitlines()
        else:  # no text/plain part: the raw body
            text = _raw_text(received.content.partition(b"\r\n\r\n")[2])
        attachments = [_printable(f"[attachment {item.get_filename()}: {item.get_content_type()}, "
                                  f"{len(item.get_payload(decode=True) or b'')} octets]")
                       for item in msg.iter_attachments()]
    except Exception:  # the email package raises assorted errors on malformed input: show it raw, never drop it
        return _cut(_raw_text(received.content))
    return [*headers, "", *_cut(text), *attachments]


def print_message(arrival: Arrival) -> None:
    """The default sink: envelope, headers and the first lines of the text, on stdout."""
    lines = [f"--- {arrival.heading} ---", *_envelope_lines(arrival.received), *_content_lines(arrival.received),
             f"--- end of message {arrival.number} ---"]
    _say("\n".join(lines))


class MaildirSink:
    """``--maildir DIR``: each message becomes a file in DIR/new, written through DIR/tmp (mailbox.Maildir)."""

    def __init__(self, path: Path) -> None:
        # mailbox.Maildir makes tmp/new/cur only for a directory it creates itself; an existing empty one
        # (a fresh mktemp -d) would fail at the first message.
        try:
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _usage_error(f"--maildir: cannot create {path}: {exc.strerror or exc}") from None
        self.path = path
        self.box = mailbox.Maildir(path, create=False)

    def __call__(self, arrival: Arrival) -> None:
        key = self.box.add(_maildir_bytes(arrival.received))
        _say(f"{arrival.heading}: stored as {self.path / 'new' / key}")


def _maildir_bytes(received: ReceivedMessage) -> bytes:
    """The message as a Maildir file: Unix line ends, and the envelope in front as a delivery agent writes it."""
    envelope = [f"Return-Path: <{received.mail_from}>"]
    envelope += [f"Delivered-To: {rcpt}" for rcpt in received.rcpt_tos]
    head = "".join(f"{line}\n" for line in envelope).encode("utf-8", "backslashreplace")
    return head + received.content.replace(b"\r\n", b"\n")


# -- the aiosmtpd handler ----------------------------------------------------------------------


class ServeHandler:
    """aiosmtpd handler: a RecordingHandler answers EHLO, MAIL, RCPT and AUTH; this adds refusal by pattern and
    hands each message to a sink instead of keeping it (a server left running must not grow)."""

    def __init__(self, recorder: RecordingHandler, cfg: ServeConfig, sink: Sink) -> None:
        self.recorder = recorder
        self.cfg = cfg
        self.sink = sink
        self.count = 0  # aiosmtpd runs every hook in its one event-loop thread: no lock needed

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.recorder.commands.clear()  # the recorder logs every command; nobody reads that log here
        responses = await self.recorder.handle_EHLO(server, session, envelope, hostname, responses)
        if not self.recorder.credentials:  # nobody can log in: do not offer aiosmtpd's built-in mechanisms
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        self.recorder.commands.clear()
        return await self.recorder.handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        for pattern in self.cfg.refuse:
            # Case-insensitive: domains are, and in practice so are local parts.
            if fnmatchcase(address.lower(), pattern.lower()):
                return f"550 5.1.1 <{address}>: mailbox unavailable (--refuse {pattern})"
        return await self.recorder.handle_RCPT(server, session, envelope, address, rcpt_options)

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.recorder.auth_CRAM__MD5(server, args)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.count += 1
        arrival = Arrival(self.count, _received(session, envelope), _peer(session), self._security(session))
        try:
            self.sink(arrival)
        except OSError as exc:  # a full disk, a closed stdout: the client may try again later
            print(f"{PROG} serve: cannot store message {arrival.number}: {exc}", file=sys.stderr, flush=True)
            return self._reply("451 4.3.0 cannot store the message now, try again later", arrival)
        done = "delivered" if self.cfg.lmtp else "queued"
        return self._reply(f"250 2.0.0 {done} as {arrival.number}", arrival)

    def _security(self, session: Any) -> str:
        # aiosmtpd sets session.ssl after STARTTLS only; implicit TLS is the whole server's.
        return "TLS" if self.cfg.tls else "STARTTLS" if session.ssl is not None else "plain text"

    def _reply(self, reply: str, arrival: Arrival) -> str:
        if not self.cfg.lmtp:
            return reply
        # LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order.
        code, status, text = reply.split(" ", 2)
        return "\r\n".join(f"{code} {status} <{rcpt}> {text}" for rcpt in arrival.received.rcpt_tos)


def _received(session: Any, envelope: Any) -> ReceivedMessage:
    from .testing.servers import ReceivedMessage  # loaded already: the server runs on it

    content = envelope.original_content if envelope.original_content is not None else envelope.content
    login = getattr(session.auth_data, "login", None)
    return ReceivedMessage(
        envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(content), tuple(envelope.mail_options),
        smtp_utf8=bool(envelope.smtp_utf8),
        authenticated_as=login.decode("utf-8", "replace") if isinstance(login, bytes) else login,
        peer_tls=session.ssl is not None,
    )


def _peer(session: Any) -> str:
    peer = session.peer
    return _where(str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def _auth_in_clear_ok(transport: asyncio.BaseTransport) -> bool:
    """May this connection authenticate now?  Over TLS, or from this machine (the password stays on it)."""
    if transport.get_extra_info("ssl_object") is not None:
        return True
    peer = transport.get_extra_info("peername")
    return isinstance(peer, tuple) and _is_loopback_ip(str(peer[0]))


def _make_controller(cfg: ServeConfig, handler: ServeHandler, tls: ssl.SSLContext | None) -> Controller:
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP

    class ServeSMTP(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            # aiosmtpd decides "AUTH needs TLS" once for the whole server and does not count implicit TLS
            # as TLS; decide it per connection instead (after STARTTLS this runs again, with TLS).
            self._auth_require_tls = not _auth_in_clear_ok(transport)

    class ServeLMTP(LMTP, ServeSMTP):
        """LMTP's LHLO, with the per-connection AUTH rule."""

    server_class = ServeLMTP if cfg.lmtp else ServeSMTP

    class ServeController(Controller):
        def factory(self) -> SMTP:
            return server_class(self.handler, **self.SMTP_kwargs)

    recorder = handler.recorder
    return ServeController(
        handler, hostname=cfg.host, port=cfg.port, ssl_context=tls if cfg.tls else None,
        server_hostname="localhost", data_size_limit=_DATA_SIZE_LIMIT, enable_SMTPUTF8=True,
        tls_context=tls if cfg.starttls else None,
        # Required when logins are configured, as on a submission server.  auth_require_tls=True is only
        # the default that ServeSMTP overrides per connection (False here would make aiosmtpd warn).
        auth_required=bool(cfg.credentials), auth_require_tls=True,
        authenticator=recorder.authenticate if cfg.credentials else None,
    )


# -- running -----------------------------------------------------------------------------------


@contextmanager
def _certificates(cfg: ServeConfig) -> Iterator[tuple[ssl.SSLContext | None, Path | None]]:
    """The server's TLS context and the CA file clients trust; a CA file of our own is removed at the end."""
    if not (cfg.starttls or cfg.tls):
        yield None, None
        return
    from .testing.servers import make_test_tls

    names = list(_CERT_NAMES)
    try:
        unspecified = ipaddress.ip_address(cfg.host).is_unspecified
    except ValueError:
        unspecified = False
    if cfg.host not in names and not unspecified:
        names.append(cfg.host)
    made = make_test_tls(*names)
    own_dir = None if cfg.ca_out is not None else Path(tempfile.mkdtemp(prefix="smtp-fsm-serve-"))
    ca_file = own_dir / "ca.pem" if own_dir is not None else cfg.ca_out
    assert ca_file is not None
    try:
        try:
            ca_file.write_bytes(made.ca_pem)
        except OSError as exc:
            raise _usage_error(f"cannot write the CA certificate to {ca_file}: {exc.strerror or exc}") from None
        _say(f"{PROG} serve: CA certificate: {ca_file} (the server's certificate is for {', '.join(names)})")
        yield made.server_context, ca_file
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _check_port(cfg: ServeConfig) -> ServeConfig:
    """Bind and release each address to fail at once with a clear message (aiosmtpd reports a busy port only
    after its 5-second start timeout); port 0 becomes a free port."""
    port = cfg.port
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(cfg.host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as sock:
                # As asyncio's create_server binds: address reuse, and IPv6 sockets for IPv6 only.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                port = port or int(sock.getsockname()[1])
    except OSError as exc:
        raise _usage_error(f"cannot listen on {cfg.where}: {exc.strerror or exc}") from None
    return replace(cfg, port=port)


def _features(cfg: ServeConfig) -> str:
    features = ["LMTP" if cfg.lmtp else "SMTP"]
    if cfg.tls:
        features.append("implicit TLS")
    if cfg.starttls:
        features.append("STARTTLS")
    if cfg.credentials:
        features.append("AUTH required: PLAIN LOGIN CRAM-MD5")
    if cfg.pipelining:
        features.append("PIPELINING")
    if cfg.refuse:
        features.append(f"refusing {' '.join(cfg.refuse)}")
    return ", ".join(features)


def _send_hint(cfg: ServeConfig, ca_file: Path | None) -> str:
    """A send command that works against this server, ready to copy into another shell."""
    try:
        unspecified = ipaddress.ip_address(cfg.host).is_unspecified
    except ValueError:
        unspecified = False
    words = [PROG, "send", "--server", _where("127.0.0.1" if unspecified else cfg.host, cfg.port)]
    words += ["--lmtp"] if cfg.lmtp else []
    words += ["--tls"] if cfg.tls else ["--starttls", "required"] if cfg.starttls else []
    words += ["--cafile", str(ca_file)] if ca_file is not None else []
    words += ["--auth-user", next(iter(cfg.credentials))] if cfg.credentials else []
    words += ["--from", "me@example.org", "--to", "you@example.org", "--subject", "hello", "--body", "hi there"]
    return shlex.join(words)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop(controller: Controller) -> None:
    # The server thread is a daemon: if stopping takes too long, leaving it behind cannot block the exit.
    stopper = threading.Thread(target=controller.stop, kwargs={"no_assert": True}, daemon=True)
    stopper.start()
    stopper.join(_STOP_TIMEOUT)


@contextmanager
def _signals(handlers: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int]) -> Iterator[None]:
    """Set signal handlers for a while; a no-op outside the main thread, where Python allows none."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(cfg: ServeConfig, controller: Controller) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    # SIGTERM stops it the way Ctrl-C does.  SIGINT is set too: a script's background job starts with it
    # ignored, and "kill -INT" is still this server's documented way to stop.
    with _signals({signal.SIGINT: _interrupt, signal.SIGTERM: _interrupt}):
        try:
            try:
                controller.start()
            except OSError as exc:
                raise _usage_error(f"cannot listen on {cfg.where}: {exc.strerror or exc}") from None
            _say(f"{PROG} serve: listening on {cfg.where} ({_features(cfg)}); press Ctrl-C to stop")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            # A second Ctrl-C must not cut the clean-up short with a traceback.
            with _signals({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}):
                _stop(controller)


def cmd_serve(args: argparse.Namespace) -> int:
    """``smtp-fsm serve``: run until Ctrl-C or SIGTERM, then exit 0."""
    cfg = _config(args)
    missing = _missing_dependency(cfg)
    if missing is not None:
        print(missing, file=sys.stderr)
        return EXIT_USAGE
    from .testing.servers import RecordingHandler

    # aiosmtpd 1.4.6 logs warnings of its own (one on every AUTH); errors still show.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    cfg = _check_port(cfg)
    sink: Sink = print_message if cfg.maildir is None else MaildirSink(cfg.maildir)
    recorder = RecordingHandler(pipelining=cfg.pipelining, lmtp=cfg.lmtp, credentials=cfg.credentials)
    handler = ServeHandler(recorder, cfg, sink)
    with _certificates(cfg) as (tls, ca_file):
        controller = _make_controller(cfg, handler, tls)
        if cfg.maildir is not None:
            _say(f"{PROG} serve: storing each message in the Maildir {cfg.maildir}")
        if cfg.credentials and not (cfg.tls or cfg.starttls) and cfg.beyond_loopback:
            _say(f"{PROG} serve: note: clients on other machines cannot log in without --starttls or --tls")
        _say(f"{PROG} serve: try: {_send_hint(cfg, ca_file)}")
        _run(cfg, controller)
    _say(f"{PROG} serve: stopped after {handler.count} message{'' if handler.count == 1 else 's'}")
    return EXIT_OK


# -- the sub-parser ----------------------------------------------------------------------------

_SERVE_HELP = f"""\
examples:
  # print each message as it arrives; then, from another shell, send it one
  {PROG} serve
  {PROG} send --server 127.0.0.1:{DEFAULT_PORT} --from me@example.org --to you@example.org --body hi

  # refuse some recipients, require a login, offer STARTTLS (the CA file's path is printed)
  {PROG} serve --refuse '*@nowhere.test' --auth alice:secret --starttls
  {PROG} send --server 127.0.0.1:{DEFAULT_PORT} --starttls required --cafile PRINTED/ca.pem \\
      --auth-user alice --from alice@example.org --to bob@example.org --to x@nowhere.test --body hi

  # LMTP into a Maildir
  {PROG} serve --lmtp --port 2424 --maildir /tmp/maildir

  # implicit TLS on every interface: anyone who can reach this machine can connect
  {PROG} serve --listen 0.0.0.0:4650 --public --tls --ca-out ca.pem

Stop it with Ctrl-C (or SIGTERM): it exits with 0.

exit codes:
  0  stopped with Ctrl-C or SIGTERM
  2  usage error: bad arguments, a port that is taken, a non-loopback address
     without --public, or a missing package (aiosmtpd; trustme for TLS)
"""


def add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command to ``smtp-fsm``'s sub-parsers (cli's build_parser calls this)."""
    serve = commands.add_parser(
        "serve", help="run a local SMTP/LMTP server that prints or stores what it receives",
        description="Run an aiosmtpd server (127.0.0.1:2525 unless told otherwise) to try clients against: "
                    "each message is printed (envelope, headers, first lines) or stored in a Maildir.",
        epilog=_SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(func=cmd_serve, command_parser=serve)
    where = serve.add_argument_group("where")
    where.add_argument("--listen", type=_listen, default=("127.0.0.1", None), metavar="HOST[:PORT]",
                       help="address to listen on; IPv6 as [::1]:2525 (default: 127.0.0.1)")
    where.add_argument("--port", type=_port, metavar="N",
                       help=f"port to listen on (default: {DEFAULT_PORT}; 0: any free port, printed at start)")
    where.add_argument("--public", action="store_true",
                       help="allow an address other than loopback (anyone who can reach it can send mail here)")

    smtp = serve.add_argument_group("protocol")
    smtp.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033): LHLO, one reply per recipient")
    smtp.add_argument("--pipelining", action="store_true", help="advertise PIPELINING")
    smtp.add_argument("--refuse", action="append", default=[], metavar="PATTERN",
                      help="refuse recipients matching PATTERN (shell-style, case-insensitive, e.g. '*@nowhere.test') "
                           "with 550 5.1.1 (repeatable)")

    sec = serve.add_argument_group("TLS and authentication")
    tls = sec.add_mutually_exclusive_group()
    tls.add_argument("--starttls", action="store_true",
                     help="offer STARTTLS (with a certificate made for 127.0.0.1 and localhost)")
    tls.add_argument("--tls", action="store_true", help="implicit TLS from the first byte (RFC 8314)")
    sec.add_argument("--ca-out", type=Path, metavar="FILE",
                     help="write the CA certificate to FILE and keep it (default: a temporary file, removed at exit)")
    sec.add_argument("--auth", action="append", type=_credential, default=[], metavar="USER:PASSWORD",
                     help="accept this login (repeatable; PLAIN, LOGIN, CRAM-MD5) and require one before MAIL; "
                          "without TLS only clients on this machine may log in")

    out = serve.add_argument_group("output")
    out.add_argument("--maildir", type=Path, metavar="DIR",
                     help="store each message in the Maildir DIR (DIR/new, cur, tmp) instead of printing it")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m smtp_fsm.serve [OPTIONS]``: the command on its own, with the exit codes smtp-fsm gives it."""
    from .cli import UsageError

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")  # never die printing a name the terminal cannot show
    parser = argparse.ArgumentParser(prog=PROG)
    add_serve(parser.add_subparsers())
    try:
        args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:  # --help (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return cmd_serve(args)
    except UsageError as exc:
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


__all__ = ["DEFAULT_PORT", "Arrival", "MaildirSink", "ServeConfig", "ServeHandler", "add_serve", "cmd_serve",
           "main", "print_message"]

if __name__ == "__main__":
    raise SystemExit(main())
