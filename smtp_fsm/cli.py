"""The command line ``smtp-fsm`` (send, demo, diagram, trace): a thin shell over the drivers.

Every protocol decision stays in the engine.  This module only turns
arguments into an ``EmailMessage`` (or raw bytes) and driver keywords, prints
what came back, and maps the library's exception classes to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import ipaddress
import math
import mimetypes
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, TextIO

from ._extras import GraphvizMissing, MissingExtra
from .addresses import encode_address
from .auth import MECHANISMS
from .errors import (
    AuthenticationError,
    DataRefused,
    LocalProtocolError,
    RecipientsRefused,
    SenderRefused,
    ServerDisconnected,
    SMTPConnectError,
    SMTPError,
    SMTPReplyError,
    SMTPTimeout,
    TLSError,
    TLSUnavailable,
)
from .message import dot_stuff, envelope_from_headers, needs_utf8_headers, payload_from_bytes, payload_from_message
from .options import ClientOptions, SessionOptions, check_server_hostname
from .protocol import table as protocol
from .replies import Reply
from .results import SendResult
from .session import ClientSession, QuitAfter, SendOptions, StartTLSPolicy
from .sync import SMTPClient

PROG = "smtp-fsm"

EXIT_OK = 0
EXIT_SOME_REFUSED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_AUTH = 4
EXIT_REFUSED = 5
EXIT_PROTOCOL = 6

#: The full table is in ``send --help`` only: the other commands have no exit code but 0 and 2 to explain.
EXIT_CODES_HELP = """\
exit codes:
  0  all recipients accepted (for serve, demo, diagram, trace: done)
  1  some recipients refused; the message went to the others
  2  usage error: bad arguments or an unreadable file; nothing was sent
  3  connection or TLS failure: cannot connect (refused, or no answer within
     --timeout), TLS handshake or certificate failed or cut, STARTTLS required
     but unavailable, greeting refused, or the server hung up before the
     session was open
  4  authentication failed, or credentials refused over an unencrypted link
  5  message refused: the sender, every recipient, or the data
  6  protocol error or timeout: the server broke SMTP, did not answer within
     --timeout (the TLS handshake included; the final reply: --data-timeout),
     or closed the connection mid-session
"""

# States in which a hang-up means "could not open a session" (exit 3), not a failure mid-session (exit 6).
_SETUP_STATES = protocol.SETUP_STATES
_HEADER_NAME = re.compile(r"[!-9;-~]+")
#: RFC 2045 §5.1 type "/" subtype, each an RFC 2045 token.
_MIME_TYPE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)/([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
#: Composite types a file cannot be attached as: they may not be base64-encoded (RFC 2045 §6.4, RFC 2046
#: §5.2.1), and that is how a file's bytes go out.
_COMPOSITE_TYPES = ("message", "multipart")
#: swaks' defaults for a message given no subject or body ("test <date>", "This is a test mailing").
_DEFAULT_SUBJECT = "test {date}"
_DEFAULT_BODY = "This is a test mailing\n"
INSECURE_WARNING = (f"{PROG}: WARNING: --insecure: the server's certificate is not checked; "
                    "anyone on the path can read and change this session")
_FORMATS = ("dot", "mmd", "svg")
#: The stepper's views (stepper.STEPPER_VIEWS; a test keeps the two equal: importing it here would draw the lab).
_STEPPER_VIEWS = ("pages", "machine", "setup", "auth", "transaction", "content", "endings", "lab")
#: --trace shows this many lines of the message itself; --dry-run shows all of it.
_TRACE_DATA_LINES = 20


class UsageError(Exception):
    """A bad argument found after parsing (unreadable file, invalid address...): exit 2."""


@dataclass(frozen=True)
class Attachment:
    """One ``--attach FILE``, with the ``--attach-type`` and ``--attach-name`` given before it (None: guessed)."""

    path: str
    mime_type: str | None = None
    name: str | None = None


@dataclass
class Mail:
    """What ``send`` delivers: the envelope and either a built message or ready bytes."""

    sender: str
    recipients: list[str]
    content: EmailMessage | bytes


# -- argument types (argparse prints their ArgumentTypeError as a one-line usage error) ------


def _host_port(text: str, lowest_port: int) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``; a bare IPv6 address has no port."""
    host, port = text, None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError("write an IPv6 address as [::1] or [::1]:2525")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise argparse.ArgumentTypeError("empty host")
    if port is None:
        return host, None
    if not port.isdigit() or not lowest_port <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port must be {lowest_port}-65535, not {port!r}")
    return host, int(port)


def _server(text: str) -> tuple[str, int | None]:
    return _host_port(text, 1)


def _name_server(text: str) -> tuple[str, int | None]:
    host, port = _host_port(text, 1)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give the name server as an IP address, not {host!r}") from None
    return host, port


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {text!r}")
    return int(text)


def _local_interface(text: str) -> tuple[str, int]:
    """``--local-interface ADDR[:PORT]``: the address (or name) to connect from; no port or 0 is any port."""
    host, port = _host_port(text, 0)
    return host, port or 0


def _header(text: str) -> tuple[str, str]:
    if "\r" in text or "\n" in text:
        # Checked here, not left to the email package, so the refusal is one line that says why.
        raise argparse.ArgumentTypeError("a header cannot hold CR or LF: it would end the header and start another")
    name, colon, value = text.partition(":")
    if not colon or not _HEADER_NAME.fullmatch(name.strip()):
        raise argparse.ArgumentTypeError('write a header as "Name: value"')
    return name.strip(), value.strip()


def _mime_type(text: str) -> str:
    match = _MIME_TYPE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"write a MIME type as type/subtype (e.g. application/pdf), not {text!r}")
    if match.group(1).lower() in _COMPOSITE_TYPES:
        raise argparse.ArgumentTypeError(f"a file cannot be attached as {match.group(1).lower()}/*, which may not "
                                         "be base64-encoded (RFC 2045 §6.4); use application/octet-stream")
    return f"{match.group(1)}/{match.group(2)}".lower()


def _attach_name(text: str) -> str:
    if not text or any(char < " " or char == "\x7f" for char in text):
        raise argparse.ArgumentTypeError("an attachment name must be non-empty, without control characters")
    return text


def _tls_sni(text: str) -> str:
    try:
        check_server_hostname(text)
    except LocalProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("server_hostname", "the TLS name")) from None
    return text


class _AttachAction(argparse.Action):
    """``--attach FILE``: one :class:`Attachment`, taking the ``--attach-type``/``--attach-name`` given since
    the previous ``--attach`` (argparse calls actions in command-line order, so "next" is well defined)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        # A new list each time: argparse hands every parse the same default list object.
        attachments = [*getattr(namespace, self.dest), Attachment(str(values), namespace.attach_type,
                                                                  namespace.attach_name)]
        setattr(namespace, self.dest, attachments)
        namespace.attach_type = namespace.attach_name = None


class _NextAttachmentAction(argparse.Action):
    """``--attach-type`` / ``--attach-name``: kept for the next ``--attach``; twice before one is an error
    (the first would be silently lost)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest) is not None:
            raise argparse.ArgumentError(self, "given twice before an --attach (each applies to the next --attach)")
        setattr(namespace, self.dest, values)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("the timeout must be a positive number of seconds")
    return value


def _formats(text: str) -> list[str]:
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = sorted(set(formats) - set(_FORMATS))
    if not formats or unknown:
        raise argparse.ArgumentTypeError(f"formats are a comma-separated list of {', '.join(_FORMATS)}")
    return formats


# -- send --------------------------------------------------------------------------------


def _read_bytes(name: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {name}: {exc.strerror or exc}") from None


def _split_address_list(value: str) -> list[str]:
    """``value``'s comma-separated items; commas inside quotes or angle brackets do not separate."""
    items: list[str] = []
    current: list[str] = []
    quoted, angle, escaped = False, 0, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle += 1
        elif char == ">" and not quoted and angle:
            angle -= 1
        elif char == "," and not quoted and not angle:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _address_of(item: str) -> str:
    """The address in ``Name <addr>`` (what the brackets hold), or the item itself."""
    if item.endswith(">") and "<" in item:
        return item[item.rindex("<") + 1 : -1].strip()
    return item


def _typed_addresses(flag: str, values: Sequence[str], *, sender: bool = False) -> list[str]:
    """The addresses in ``values`` ("Name <addr>" or a bare address, comma lists allowed) exactly as typed.

    Each is checked by the engine's own validator, as the envelope address the user wrote: the email
    package would repair or drop some on their way into the headers ("a b@example.org" comes back as
    '"a b"@example.org', "c@" as nothing), and the envelope would name a mailbox nobody typed.  The null
    sender is sent only when asked for by name: ``--from '<>'``.
    """
    addresses = []
    for value in values:
        items = _split_address_list(value)
        if not items:
            hint = " (the null sender is --from '<>')" if sender else ""
            raise UsageError(f"{flag}: no address given{hint}")
        for item in items:
            address = _address_of(item)
            if not address and not (sender and item == "<>"):
                hint = "; the null sender is --from '<>'" if sender else ""
                raise UsageError(f"{flag}: {item!r} holds no address{hint}")
            try:
                encode_address(address, smtputf8=True, allow_null=sender)  # the server's SMTPUTF8 is not known yet
            except LocalProtocolError as exc:
                raise UsageError(f"{flag}: {exc}") from None
            addresses.append(address)
    return addresses


def _default_sender() -> str:
    """swaks' default sender, ``$USER@$(hostname)``, if the address validator takes it.

    The host name is the kernel's, not looked up in DNS (a lookup could hang); a name without a dot
    ("user@localhost") is a valid mailbox, one with an underscore or a user name with a space is not.
    """
    try:
        user = getpass.getuser()  # LOGNAME, USER, LNAME, USERNAME, then the password database
    except (OSError, KeyError, ImportError):  # no such variable and no passwd entry (a container's uid)
        user = ""
    address = f"{user}@{socket.gethostname()}"
    try:
        encode_address(address, smtputf8=True)
    except LocalProtocolError as exc:
        raise UsageError(f"no --from given, and the default sender $USER@hostname is not a valid address: "
                         f"{exc}; give --from") from None
    return address


def _build_mail(args: argparse.Namespace) -> Mail:
    for flag, pending in (("--attach-type", args.attach_type), ("--attach-name", args.attach_name)):
        if pending is not None:
            raise UsageError(f"{flag} {pending} applies to the next --attach, and none follows it")
    if args.message is not None:
        return _ready_mail(args)
    if not (args.to or args.cc or args.bcc):
        raise UsageError("give at least one recipient with --to, --cc or --bcc")
    from_addr = args.from_addr if args.from_addr is not None else _default_sender()
    [sender] = _one_sender(from_addr)
    recipients = [addr for flag, values in (("--to", args.to), ("--cc", args.cc), ("--bcc", args.bcc))
                  for addr in _typed_addresses(flag, values)]
    if args.body is not None and args.body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    msg = EmailMessage(policy=email_policy.default)
    given = {name.lower() for name, _ in args.header}
    date = formatdate(localtime=True)
    try:
        if sender:  # the null sender has no From header to give
            msg["From"] = from_addr
        for name, values in (("To", args.to), ("Cc", args.cc), ("Bcc", args.bcc)):
            if values:
                msg[name] = ", ".join(values)  # Bcc is for the envelope only: the engine strips the header
        if args.subject is not None:
            msg["Subject"] = args.subject
        elif "subject" not in given:  # swaks' default, so that a bare "send --to" is a complete test
            msg["Subject"] = _DEFAULT_SUBJECT.format(date=date)
        for name, value in args.header:
            msg[name] = value
        if "date" not in given:
            msg["Date"] = date
        if "message-id" not in given:
            domain = from_addr.rpartition("@")[2].strip(" >") or "smtp-fsm.invalid"
            msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(_body_text(args))
        for attachment in args.attach:
            _attach(msg, attachment)
    except (ValueError, TypeError, UnicodeError, LookupError, MessageError) as exc:
        # The email package refuses CR/LF in header values, undecodable argv bytes, and (with an
        # IndexError, a LookupError) some odd display names.
        raise UsageError(f"cannot build the message: {exc}") from None
    # The envelope is what was typed and checked above, not what the headers make of it.
    return Mail(sender, recipients, msg)


def _one_sender(value: str) -> list[str]:
    senders = _typed_addresses("--from", [value], sender=True)
    if len(senders) != 1:
        raise UsageError(f"--from: give one sender, not {len(senders)}")
    return senders


def _body_text(args: argparse.Namespace) -> str:
    if args.body_file is None:
        return _DEFAULT_BODY if args.body is None else str(args.body)
    try:
        return _read_bytes(args.body_file, "body file").decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--body-file {args.body_file} is not UTF-8 text; attach it with --attach") from None


def _attach(msg: EmailMessage, attachment: Attachment) -> None:
    data = _read_bytes(attachment.path, "attachment")
    kind = attachment.mime_type
    if kind is None:
        guessed, encoding = mimetypes.guess_type(attachment.path)
        # A compressed file (x.tar.gz) is sent as what it is on disk, not as what it unpacks to; a guessed
        # message/rfc822 (x.eml) as plain bytes too, since it may not be base64-encoded (RFC 2046 §5.2.1).
        usable = guessed and encoding is None and guessed.partition("/")[0] not in _COMPOSITE_TYPES
        kind = guessed if usable and guessed else "application/octet-stream"
    maintype, _, subtype = kind.partition("/")
    name = attachment.name if attachment.name is not None else Path(attachment.path).name
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


def _ready_mail(args: argparse.Namespace) -> Mail:
    """``--message FILE|-``: the bytes go out as they are; the envelope comes from options or headers."""
    clashing = [flag for flag, value in (("--subject", args.subject), ("--body", args.body),
                                         ("--body-file", args.body_file), ("--attach", args.attach),
                                         ("--header", args.header)) if value]
    if clashing:
        raise UsageError(f"--message sends a ready message; it cannot be combined with {', '.join(clashing)}")
    data = _read_bytes(args.message, "message")
    parsed = message_from_bytes(data, policy=email_policy.default)
    header_sender, header_recipients = envelope_from_headers(parsed)
    if args.from_addr is None:
        sender = header_sender
    else:  # "Name <addr>" works here too, as when smtp-fsm builds the message; '<>' is the null sender
        [sender] = _one_sender(args.from_addr)
    # Each option may hold a comma list, as when smtp-fsm builds the message itself.
    recipients = [addr for flag, values in (("--to", args.to), ("--cc", args.cc), ("--bcc", args.bcc))
                  for addr in _typed_addresses(flag, values)] or header_recipients
    if not sender and args.from_addr is None:
        raise UsageError("no sender: give --from or put a From header in the message")
    if not recipients:
        raise UsageError("no recipients: give --to/--cc/--bcc or put To/Cc/Bcc headers in the message")
    return Mail(sender, recipients, data)


def _dsn_options(args: argparse.Namespace) -> SendOptions:
    options: SendOptions = {}
    if args.dsn_notify is not None:
        options["notify"] = [word.strip() for word in args.dsn_notify.split(",")]
    if args.dsn_ret is not None:
        options["ret"] = args.dsn_ret
    return options


def _check_with_engine(mail: Mail, args: argparse.Namespace) -> None:
    """Let the engine validate addresses, DSN words and headers before any connection is made."""
    session = None
    try:
        session = ClientSession(local_hostname=args.ehlo or "[127.0.0.1]", lmtp=args.lmtp)
        session.sendmail(mail.sender, mail.recipients, mail.content, **_dsn_options(args))
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if session is not None:
            session.close()


def _dry_run(mail: Mail) -> int:
    if isinstance(mail.content, EmailMessage):
        utf8 = needs_utf8_headers([mail.sender, *mail.recipients])
        payload = payload_from_message(mail.content, utf8=utf8)
    else:
        payload = payload_from_bytes(mail.content)
    data = dot_stuff(payload.content)
    lines = ["# dry run: nothing was sent", f"# envelope sender: <{mail.sender}>"]
    lines += [f"# envelope recipient: <{rcpt}>" for rcpt in mail.recipients]
    if payload.eight_bit:
        lines.append("# 8-bit content: sent as BODY=8BITMIME, or re-encoded 7-bit for a server without 8BITMIME")
    lines.append(f"# data: {len(data)} octets as written after DATA (CRLF line ends, dot-stuffed, ending CRLF.CRLF):")
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.write("\n".join(lines).encode("utf-8") + b"\n")
    out.write(data)
    out.flush()
    return EXIT_OK


def _password(args: argparse.Namespace) -> str | None:
    sources = [flag for flag, value in (("--auth-password", args.auth_password),
                                        ("--auth-password-env", args.auth_password_env),
                                        ("--auth-password-file", args.auth_password_file)) if value is not None]
    if len(sources) > 1:
        raise UsageError(f"give only one of {', '.join(sources)}")
    if args.auth_user is None:
        if sources:
            raise UsageError(f"{sources[0]} needs --auth-user")
        return None
    if args.auth_password_env is not None:
        value = os.environ.get(args.auth_password_env)
        if value is None:
            raise UsageError(f"environment variable {args.auth_password_env} is not set")
        return value
    if args.auth_password_file is not None:
        try:
            return _read_bytes(args.auth_password_file, "password file").decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise UsageError(f"{args.auth_password_file} is not UTF-8") from None
    if args.auth_password is not None:
        print(f"{PROG}: warning: a password on the command line is visible to other users and kept in shell "
              "history; prefer --auth-password-env or --auth-password-file", file=sys.stderr)
        return str(args.auth_password)
    if "-" in (args.message, args.body_file, *(attachment.path for attachment in args.attach)):
        raise UsageError("cannot prompt for the password while the message comes from stdin; "
                         "use --auth-password-env or --auth-password-file")
    try:
        return getpass.getpass(f"password for {args.auth_user}: ")
    except EOFError:
        raise UsageError("no password given") from None


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_key is not None and args.tls_cert is None:
        raise UsageError("--tls-key needs --tls-cert (the certificate it is the key of)")
    if args.insecure and args.cafile is not None:
        raise UsageError("--insecure checks no certificate, so --cafile would change nothing; give one of them")
    if args.cafile is None and args.tls_cert is None and not args.insecure:
        return None  # the driver's default: the system's trusted CAs, hostname checked
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {args.cafile}: {exc}") from None
    if args.insecure:
        # Every time, never once per user: a script that copied --insecure from a test keeps saying so.
        print(INSECURE_WARNING, file=sys.stderr)
        context.check_hostname = False  # must come before CERT_NONE: the ssl module refuses the other order
        context.verify_mode = ssl.CERT_NONE
    if args.tls_cert is not None:
        _load_client_certificate(context, args.tls_cert, args.tls_key)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """``--tls-cert``/``--tls-key`` into ``context``, every failure a one-line usage error (exit 2)."""
    files = f"--tls-cert {cert}" + (f" --tls-key {key}" if key is not None else "")

    def no_password() -> str:
        # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
        raise UsageError(f"{files}: the private key is encrypted; give an unencrypted key")

    try:
        context.load_cert_chain(cert, key, password=no_password)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            if "KEY_VALUES_MISMATCH" in str(exc):
                raise UsageError(f"{files}: the private key does not belong to the certificate") from None
            what = "a PEM certificate" + (" and a PEM private key" if key is not None else " followed by its key")
            detail = f" ({exc.reason})" if exc.reason else ""  # OpenSSL's "PEM lib (_ssl.c:3905)" says nothing
            raise UsageError(f"{files}: not {what}{detail}") from None
        raise UsageError(f"cannot read {files}: {exc.strerror or exc}") from None


#: swaks' --quit-after names (and their aliases) -> the engine's stop points.
_STOP_POINTS = {"connect": "banner", "banner": "banner", "ehlo": "ehlo", "helo": "ehlo", "first-helo": "ehlo",
                "first-ehlo": "ehlo", "tls": "tls", "starttls": "tls", "auth": "auth", "mail": "mail",
                "from": "mail", "rcpt": "rcpt", "to": "rcpt"}
_SETUP_POINTS = frozenset({"banner", "ehlo", "tls", "auth"})


def _stop_point(value: str) -> str:
    point = _STOP_POINTS.get(value.lower())
    if point is None:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(_STOP_POINTS)}")
    return point


def _quit_after(args: argparse.Namespace) -> tuple[QuitAfter | None, StartTLSPolicy]:
    """The engine's stop point and the STARTTLS policy it needs, checked before connecting."""
    point: QuitAfter | None = args.quit_after
    if point == "auth" and args.auth_user is None:
        raise UsageError("--quit-after auth needs --auth-user (without it there is no AUTH to stop after)")
    if point == "tls":
        if args.tls:
            return "banner", args.starttls  # implicit TLS: the handshake came before the greeting
        if args.starttls == "never":
            raise UsageError("--quit-after tls with --starttls never: there is no TLS to stop after")
        return point, "required"  # no STARTTLS offered is then an error (exit 3), not a silent stop
    return point, args.starttls


def _client(args: argparse.Namespace, host: str, port: int | None, server_hostname: str | None = None) -> SMTPClient:
    mechanism = MECHANISMS.get(args.auth_mech.upper()) if args.auth_mech else None
    if args.auth_mech and mechanism is None:  # said before any password prompt
        raise UsageError(f"unknown --auth-mech {args.auth_mech!r}; choose from {', '.join(MECHANISMS)}")
    tls_context = _tls_context(args)  # a bad certificate file is said before the password prompt too
    quit_after, starttls = _quit_after(args)
    secret = _password(args)
    token_only = mechanism is not None and not mechanism.needs_password  # XOAUTH2 takes a bearer token
    try:
        session = SessionOptions(
            local_hostname=args.ehlo or "[127.0.0.1]", lmtp=args.lmtp, starttls=starttls,
            username=args.auth_user, password=None if token_only else secret,
            oauth_token=secret if token_only else None, auth_mechanism=args.auth_mech,
            allow_insecure_auth=args.allow_insecure_auth, pipelining=not args.no_pipelining, quit_after=quit_after,
            trace=args.trace or args.save_trace is not None or args.output_file is not None,
        )
        return SMTPClient.from_options(ClientOptions(
            host=host, port=port, timeout=args.timeout, data_timeout=args.data_timeout, family=args.family,
            source_address=args.local_interface, tls=args.tls, tls_context=tls_context,
            server_hostname=server_hostname or args.tls_sni, session=session, ehlo_from_socket=not args.ehlo,
        ))
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None


def exit_code_for(error: SMTPError, opening: bool) -> int:
    """The exit code for ``error``; ``opening`` is True while the session was being opened (connect, EHLO, AUTH)."""
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, TLSError | TLSUnavailable | SMTPConnectError):
        return EXIT_CONNECT
    if isinstance(error, SenderRefused | RecipientsRefused | DataRefused):
        return EXIT_REFUSED
    if isinstance(error, ServerDisconnected):
        return EXIT_CONNECT if error.state in _SETUP_STATES else EXIT_PROTOCOL
    if isinstance(error, SMTPReplyError) and error.state == protocol.GREETING:
        return EXIT_CONNECT  # the greeting was a refusal (554)
    if isinstance(error, LocalProtocolError):
        # While opening, the engine refuses only one thing locally: credentials over an unencrypted link.
        # Once open, it refuses a message the server cannot take (SIZE, DSN or 8-bit not offered).
        return EXIT_AUTH if opening else EXIT_REFUSED
    return EXIT_PROTOCOL  # RemoteProtocolError, SMTPTimeout, an unexpected reply


_WHAT_FAILED = {
    EXIT_CONNECT: "connection failed",
    EXIT_AUTH: "authentication failed",
    EXIT_REFUSED: "message refused",
    EXIT_PROTOCOL: "protocol error",
}


def _describe(reply: Reply) -> str:
    return str(reply)


def _print_recipients(result: SendResult) -> None:
    for rcpt in result.recipients:
        if rcpt in result.refused:
            print(f"refused   <{rcpt}>: {_describe(result.refused[rcpt])}")
        elif rcpt in result.accepted:
            print(f"accepted  <{rcpt}>: {_describe(result.delivery.get(rcpt) or result.accepted[rcpt])}")


def _report_result(result: SendResult, quiet: bool) -> int:
    code = EXIT_SOME_REFUSED if result.refused else EXIT_OK
    if not quiet:
        _print_recipients(result)
        final = f": {_describe(result.reply)}" if result.reply is not None else ""
        print(f"sent to {len(result.accepted)} of {len(result.recipients)} recipient(s){final}")
    else:
        # --quiet keeps the news a script must not miss: who did not get it (stderr).
        for rcpt, reply in result.refused.items():
            print(f"{PROG}: refused <{rcpt}>: {_describe(reply)}", file=sys.stderr)
    return code


def _report_error(error: SMTPError, code: int, mail: Mail, quiet: bool) -> None:
    if isinstance(error, RecipientsRefused) and not quiet:
        for rcpt, reply in error.replies.items():
            print(f"refused   <{rcpt}>: {_describe(reply)}")
        print(f"sent to 0 of {len(mail.recipients)} recipient(s)")
    elif isinstance(error, RecipientsRefused):
        for rcpt, reply in error.replies.items():
            print(f"{PROG}: refused <{rcpt}>: {_describe(reply)}", file=sys.stderr)
    what = "timeout" if isinstance(error, SMTPTimeout) else _WHAT_FAILED[code]
    detail = str(error)
    if not detail.startswith(what):  # the engine's own wording often says it already
        detail = f"{what}: {detail}"
    print(f"{PROG}: {detail}", file=sys.stderr)


def _use_color(disabled: bool = False) -> bool:
    return not disabled and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _print_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_send(args: argparse.Namespace) -> int:
    if args.dry_run and args.output_file is not None:
        raise UsageError("--output-file holds a session's transcript, and --dry-run has none: redirect stdout")
    mail = _build_mail(args)
    _check_with_engine(mail, args)
    if args.dry_run:
        return _dry_run(mail)
    transcript = _open_transcript(args.output_file)
    try:
        if args.server is None:  # straight to each recipient domain's MX hosts
            from .mxcli import deliver_routed

            return deliver_routed(mail, args, transcript)
        host, port = args.server
        return _deliver(_client(args, host, port), mail, args, transcript)
    finally:
        if transcript is not None:
            with contextlib.suppress(OSError):  # already flushed (or warned about) by _report_trace
                transcript.close()


def _open_transcript(path: Path | None) -> TextIO | None:
    """``--output-file``, opened before connecting: a path that cannot be written is exit 2 with nothing sent."""
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --output-file {path}: {exc.strerror or exc}") from None


def _deliver(client: SMTPClient, mail: Mail, args: argparse.Namespace, transcript: TextIO | None) -> int:
    opening = True
    try:
        client.connect()
        opening = False
        if client.ready is None:  # --quit-after stopped the session during setup: it said QUIT already
            _report_trace(client, args, transcript)
            if not args.quiet:
                print(f"stopped after {args.quit_after} (--quit-after): nothing sent")
            return EXIT_OK
        if isinstance(mail.content, EmailMessage):
            result = client.send_message(mail.content, mail.sender, mail.recipients, **_dsn_options(args))
        else:
            result = client.sendmail(mail.sender, mail.recipients, mail.content, **_dsn_options(args))
        with contextlib.suppress(SMTPError):
            client.quit()  # the message was already taken; a rude goodbye changes nothing
    except SMTPError as error:
        code = exit_code_for(error, opening)
        _report_trace(client, args, transcript)
        if (isinstance(error, ServerDisconnected) and error.state in (protocol.GREETING, protocol.EHLO, protocol.HELO)
                and client.encrypted and args.tls_cert is None):
            # TLS 1.3 servers check a client certificate after the client's handshake is done, so a
            # refusal looks like this hang-up rather than a TLS error: worth a hint, not a verdict.
            print(f"{PROG}: hint: a server that hangs up right after the TLS handshake may require a client "
                  "certificate (--tls-cert)", file=sys.stderr)
        _report_error(error, code, mail, args.quiet)  # last: the one line that says what failed
        return code
    finally:
        client.close()
    _report_trace(client, args, transcript)
    if args.quit_after is not None:
        return _report_probe(result, args.quit_after, args.quiet)
    return _report_result(result, args.quiet)


def _report_probe(result: SendResult, point: str, quiet: bool) -> int:
    """What a probe (--quit-after mail or rcpt) found: nothing was sent."""
    code = EXIT_SOME_REFUSED if result.refused else EXIT_OK
    if quiet:
        for rcpt, reply in result.refused.items():
            print(f"{PROG}: refused <{rcpt}>: {_describe(reply)}", file=sys.stderr)
        return code
    if point == "mail":
        print(f"sender <{result.sender}> accepted; nothing sent (--quit-after mail)")
        return code
    _print_recipients(result)
    print(f"{len(result.accepted)} of {len(result.recipients)} recipient(s) accepted; nothing sent "
          "(--quit-after rcpt)")
    return code


def _report_trace(client: SMTPClient, args: argparse.Namespace, transcript: TextIO | None) -> None:
    from .console import annotated_text
    from .trace import dump_jsonl

    if args.save_trace is not None:
        try:
            dump_jsonl(client.trace, args.save_trace)
        except OSError as exc:
            print(f"{PROG}: warning: cannot save the trace to {args.save_trace}: {exc.strerror or exc}",
                  file=sys.stderr)
    if transcript is not None:  # instead of stdout; never coloured: it is a file, not a terminal
        text = annotated_text(client.trace, color=False, max_lines=_TRACE_DATA_LINES)
        try:
            transcript.write(text if text.endswith("\n") else text + "\n")
            transcript.flush()  # a write error is reported here, not lost in close()
        except OSError as exc:  # a full disk: the mail went (or not) all the same, so only warn
            print(f"{PROG}: warning: cannot write the transcript to {args.output_file}: {exc.strerror or exc}",
                  file=sys.stderr)
    elif args.trace:
        _print_text(annotated_text(client.trace, color=_use_color(), max_lines=_TRACE_DATA_LINES))
        sys.stdout.flush()


# -- demo, diagram, trace --------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.html is not None:
        _check_writable(args.html)  # before the session: a page that cannot be written costs nothing
    return run_demo(sys.stdout, args.html, _use_color(args.no_color), args.view)


def _check_writable(path: Path) -> None:
    """``UsageError`` unless ``path`` can be written (its directory is made when missing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    target = path if path.exists() else path.parent
    if path.is_dir() or not os.access(target, os.W_OK):
        raise UsageError(f"cannot write {path}: {'a directory' if path.is_dir() else 'permission denied'}")


def cmd_diagram(args: argparse.Namespace) -> int:
    from . import diagram

    unknown = [view for view in args.view or () if view not in diagram.VIEWS]
    if unknown:
        raise UsageError(f"unknown view(s) {', '.join(unknown)}; choose from {', '.join(diagram.VIEWS)}")
    try:
        if args.view:
            written = _write_views(args.out, args.format, args.view, args.labels)
        else:
            written = diagram.write_diagrams(args.out, args.format, args.labels)
    except OSError as exc:
        raise UsageError(f"cannot write to {args.out}: {exc.strerror or exc}") from None
    for path in written:
        print(path)
    svgs = {path.stem for path in written if path.suffix == ".svg"}
    missing = [view for view in (args.view or diagram.VIEWS) if "svg" in args.format and view not in svgs]
    if missing:  # neither dot nor a shipped SVG of today's table: say what to install, never exit 0
        print(f"no SVG for {', '.join(dict.fromkeys(missing))}: {diagram.svg_hint()}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _write_views(out_dir: Path, formats: Sequence[str], views: Sequence[str], labels: str) -> list[Path]:
    """Only the chosen views, with the diagram module's own renderers."""
    from . import diagram

    renderers: dict[str, Callable[[str], str]] = {
        "dot": lambda view: diagram.to_dot(view, labels),
        "mmd": lambda view: diagram.to_mermaid(view, labels),
        "svg": lambda view: diagram.svg_for(view, labels),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for view in dict.fromkeys(views):
        for fmt in formats:
            try:
                text = renderers[fmt](view)
            except GraphvizMissing:
                continue  # reported by the caller, with what to install
            path = out_dir / f"{view}.{fmt}"
            path.write_text(text, encoding="utf-8", newline="\n")
            written.append(path)
    return written


def cmd_trace(args: argparse.Namespace) -> int:
    from .console import annotated_text
    from .trace import load_jsonl

    try:
        steps = load_jsonl(args.trace_file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot load trace {args.trace_file}: {exc}") from None
    if args.html is None:
        _print_text(annotated_text(steps, color=_use_color(args.no_color)))
        return EXIT_OK
    from .stepper import load_svgs, write_stepper

    svgs = load_svgs(args.view)  # (GraphvizMissing: exit 2 with what to install)
    try:
        write_stepper(steps, args.html, title=args.title or args.trace_file.name, view=args.view, svgs=svgs)
    except OSError as exc:
        raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    print(f"wrote {args.html} ({len(steps)} steps)")
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------

_MAIN_HELP = f"""\
An SMTP client whose protocol logic is one explicit finite-state machine.

examples:
  {PROG} send --server mx.example.org --to you@example.org
  {PROG} send --server mx.example.org --from me@example.org --to you@example.org --subject hi --body hello
  {PROG} send --server [::1]:2525 --from me@example.org --to you@example.org --dry-run
  {PROG} send --from me@example.org --to you@example.net    # no --server: to example.net's MX hosts
  {PROG} serve --starttls --auth alice:secret --refuse '*@nowhere.test'
  {PROG} demo
  {PROG} diagram --out diagrams --format dot,mmd,svg
  {PROG} trace session.jsonl --html session.html

Run "{PROG} COMMAND --help" for each command's options.
"""

_MAIN_EPILOG = f"exit codes: see `{PROG} send --help`"


def _add_serve(commands: Any) -> None:
    # serve.py imports aiosmtpd and trustme only when it runs, so the command line stays light.
    from .serve import add_serve

    add_serve(commands)

_SEND_HELP = f"""\
examples:
  # swaks' everyday test: From $USER@hostname, Subject "test <date>", body "This is a test mailing"
  {PROG} send --server mx.example.org --to you@example.org --trace

  # through a submission server: STARTTLS required, password from the environment, an attachment
  SMTP_PASSWORD=... {PROG} send --server smtp.example.org:587 --starttls required \\
      --auth-user me@example.org --auth-password-env SMTP_PASSWORD \\
      --from "张三 <me@example.org>" --to you@example.org --subject "你好" --body "Hi" --attach report.pdf

  # show what would be sent, byte for byte, without connecting
  {PROG} send --dry-run --from me@example.org --to you@example.org --body-file body.txt

{EXIT_CODES_HELP}"""


def _add_send(commands: Any) -> None:
    send = commands.add_parser(
        "send", help="send one message (like swaks)", description="Send one message and report each recipient.",
        epilog=_SEND_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.set_defaults(func=cmd_send, command_parser=send)
    _add_version(send)
    where = send.add_argument_group("server")
    where.add_argument("--dns-server", type=_name_server, metavar="ADDR[:PORT]",
                       help="without --server: ask this name server for the MX records (default: the system's)")
    where.add_argument("--mx-port", type=_port, default=25, metavar="PORT",
                       help="without --server: the port of the MX hosts (default: 25)")
    where.add_argument("--server", type=_server, metavar="HOST[:PORT]",
                       help="server to connect to; IPv6 as [::1]:2525 "
                            "(port default: 25, 465 with --tls, 24 with --lmtp)")
    family = where.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET, default=socket.AF_UNSPEC,
                        help="connect over IPv4 only (a name is resolved to its IPv4 addresses)")
    family.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6, default=socket.AF_UNSPEC,
                        help="connect over IPv6 only (a name is resolved to its IPv6 addresses)")
    where.add_argument("--local-interface", type=_local_interface, metavar="ADDR[:PORT]",
                       help="connect from this local address (and port; default: any); IPv6 as [::1]:2525")
    where.add_argument("--ehlo", "--helo", dest="ehlo", metavar="NAME",
                       help="name for EHLO/LHLO, and HELO if the server refuses EHLO (default: our address as a "
                            "literal)")
    where.add_argument("--timeout", type=_timeout, default=60.0, metavar="SECONDS",
                       help="deadline for the connection and for each complete reply (default: 60)")
    where.add_argument("--data-timeout", type=_timeout, default=600.0, metavar="SECONDS",
                       help="deadline for the reply to the end of the data (default: 600, RFC 5321 §4.5.3.2.6: "
                            "giving up earlier is what sends a message twice)")
    where.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033): LHLO, one reply per recipient")
    where.add_argument("--no-pipelining", action="store_true", help="do not pipeline even when the server offers it")
    where.add_argument("--quit-after", type=_stop_point, metavar="POINT",
                       help="say QUIT at POINT and send nothing more: connect|banner (after the greeting), "
                            "ehlo|helo (after the first EHLO), tls (after the STARTTLS handshake), auth, "
                            "mail|from (probe the sender), rcpt|to (probe the recipients: who would accept?)")

    env = send.add_argument_group("envelope and headers")
    env.add_argument("--from", dest="from_addr", metavar="ADDRESS",
                     help='sender, e.g. "Name <me@example.org>" (From header and MAIL FROM; '
                          "default: $USER@hostname, as swaks)")
    env.add_argument("--to", action="append", default=[], metavar="ADDRESS", help="recipient (repeatable)")
    env.add_argument("--cc", action="append", default=[], metavar="ADDRESS", help="Cc recipient (repeatable)")
    env.add_argument("--bcc", action="append", default=[], metavar="ADDRESS",
                     help="blind recipient (repeatable): in the envelope only, never in the headers")
    env.add_argument("--subject", metavar="TEXT", help='Subject header (any language; default: "test <date>")')
    env.add_argument("--header", action="append", type=_header, default=[], metavar='"NAME: VALUE"',
                     help="extra header (repeatable); a Date, Message-ID or Subject given here replaces the "
                          "generated one")
    env.add_argument("--dsn-notify", metavar="WORDS", help="DSN NOTIFY (RFC 3461): NEVER, or SUCCESS,FAILURE,DELAY")
    env.add_argument("--dsn-ret", type=str.upper, choices=("FULL", "HDRS"), help="DSN RET: return FULL or HDRS")

    content = send.add_argument_group("content")
    content.add_argument("--body", metavar="TEXT",
                         help='message text (UTF-8; default: "This is a test mailing")')
    content.add_argument("--body-file", metavar="FILE", help="read the message text from FILE (UTF-8; - for stdin)")
    content.add_argument("--attach", action=_AttachAction, default=[], metavar="FILE",
                         help="attach FILE (repeatable; - for stdin; MIME type guessed from its name)")
    content.add_argument("--attach-type", action=_NextAttachmentAction, type=_mime_type, metavar="TYPE/SUBTYPE",
                         help="MIME type of the next --attach (instead of the guess)")
    content.add_argument("--attach-name", action=_NextAttachmentAction, type=_attach_name, metavar="NAME",
                         help="file name of the next --attach, as the recipient sees it")
    content.add_argument("--message", metavar="FILE|-",
                         help="send a ready RFC 5322 message as is (- for stdin); envelope from its headers "
                              "unless --from/--to/--cc/--bcc are given")

    sec = send.add_argument_group("TLS and authentication")
    sec.add_argument("--tls", action="store_true", help="implicit TLS from the first byte (RFC 8314, port 465)")
    sec.add_argument("--starttls", choices=("required", "opportunistic", "never"), default="opportunistic",
                     help="STARTTLS policy (default: opportunistic, upgrade when offered)")
    sec.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE (PEM) instead of the system's")
    sec.add_argument("--tls-sni", type=_tls_sni, metavar="NAME",
                     help="the server's name for TLS: sent as SNI and checked against its certificate "
                          "(default: the --server host)")
    sec.add_argument("--tls-cert", metavar="FILE",
                     help="present the client certificate in FILE (PEM; its key too, unless --tls-key)")
    sec.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM, unencrypted)")
    sec.add_argument("--insecure", action="store_true",
                     help="do not check the server's certificate at all (warns every time; for test servers "
                          "only: prefer --cafile)")
    sec.add_argument("--auth-user", metavar="USER", help="authenticate as USER (the password is prompted for)")
    sec.add_argument("--auth-password-env", metavar="VAR", help="read the password from environment variable VAR")
    sec.add_argument("--auth-password-file", metavar="FILE", help="read the password from FILE (first line)")
    sec.add_argument("--auth-password", metavar="PASSWORD",
                     help="the password itself (works, but warns: other users can see it)")
    sec.add_argument("--auth-mech", metavar="MECH",
                     help="force a SASL mechanism: PLAIN, LOGIN, CRAM-MD5 or XOAUTH2 (the secret is the token)")
    sec.add_argument("--allow-insecure-auth", action="store_true",
                     help="allow credentials over an unencrypted link to a host that is not loopback")

    out = send.add_argument_group("output")
    out.add_argument("--trace", action="store_true",
                     help="print the transcript with the state beside each line (credentials masked; "
                          f"the message is cut after {_TRACE_DATA_LINES} lines)")
    out.add_argument("--output-file", type=Path, metavar="FILE",
                     help="write the transcript (as --trace shows it) to FILE instead of stdout; the "
                          "recipients' report stays on stdout")
    out.add_argument("--save-trace", type=Path, metavar="FILE",
                     help=f"save the trace as JSON lines (for '{PROG} trace FILE --html PAGE')")
    out.add_argument("--dry-run", action="store_true",
                     help="print the envelope and the exact bytes after DATA; do not connect")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors and refused recipients (stderr)")


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="send the classic lab's mail to an embedded server and show the states",
        description="Start an aiosmtpd server on 127.0.0.1, send a Chinese message with an attachment "
                    "through EHLO, AUTH LOGIN, MAIL, RCPT, DATA and QUIT, and print the annotated transcript.",
        epilog=f"examples:\n  {PROG} demo\n  {PROG} demo --html demo.html\n  NO_COLOR=1 {PROG} demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(func=cmd_demo, command_parser=demo)
    demo.add_argument("--html", type=Path, metavar="FILE", help="also write the session as an HTML stepper")
    demo.add_argument("--view", choices=_STEPPER_VIEWS, default="lab",
                      help="the stepper's diagram: the lab's path (default), 'pages' (each step on its phase's "
                           "page) or one view")
    demo.add_argument("--no-color", action="store_true", help="no colour (also when NO_COLOR is set or not a TTY)")


def _add_diagram(commands: Any) -> None:
    diagram = commands.add_parser(
        "diagram", help="write the state machine as DOT, Mermaid and SVG",
        description="Write the protocol table's diagrams (the overview, one page per phase, the lab). SVG needs "
                    "Graphviz's dot, or the SVGs shipped in the package when they are today's; otherwise DOT and "
                    "Mermaid are still written and the command exits 2 saying what to install.",
        epilog=f"examples:\n  {PROG} diagram\n  {PROG} diagram --out /tmp/d --format mmd\n"
               f"  {PROG} diagram --view setup --view transaction --format svg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diagram.set_defaults(func=cmd_diagram, command_parser=diagram)
    diagram.add_argument("--out", type=Path, default=Path("diagrams"), metavar="DIR",
                         help="output directory (default: diagrams)")
    diagram.add_argument("--format", type=_formats, default=list(_FORMATS), metavar="dot,mmd,svg",
                         help="formats to write (default: all three)")
    diagram.add_argument("--labels", choices=("protocol", "code"), default="protocol",
                         help="edge labels in the protocol's words (default: '250 to EHLO, STARTTLS offered') "
                              "or as the table is written (code: trigger, row label, [conditions])")
    diagram.add_argument("--view", action="append", metavar="VIEW",
                         help="write only this view (repeatable): machine, setup, auth, transaction, content, "
                              "endings or lab (default: every view)")


def _add_trace(commands: Any) -> None:
    trace = commands.add_parser(
        "trace", help="print a saved trace, or turn it into an HTML stepper",
        description="Load a trace saved as JSON lines and print it annotated with states, "
                    "or write a self-contained HTML stepper with --html.",
        epilog=f"examples:\n  {PROG} trace session.jsonl\n  {PROG} trace session.jsonl --html lecture.html "
               f'--title "SMTP with AUTH"\n  NO_COLOR=1 {PROG} trace session.jsonl | less',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.set_defaults(func=cmd_trace, command_parser=trace)
    trace.add_argument("trace_file", type=Path, metavar="TRACE.jsonl", help="a trace saved as JSON lines")
    trace.add_argument("--html", type=Path, metavar="FILE", help="write an HTML stepper to FILE")
    trace.add_argument("--view", choices=_STEPPER_VIEWS, default="pages",
                       help="the stepper's diagram: 'pages' (default: each step on its phase's page, the edges "
                            "in words), 'machine' (the whole machine) or one page or the lab")
    trace.add_argument("--title", metavar="TEXT", help="the stepper's title (default: the file name)")
    trace.add_argument("--no-color", action="store_true", help="no colour (also when NO_COLOR is set or not a TTY)")


def _add_version(parser: argparse.ArgumentParser) -> None:
    from . import __version__  # here, not at the top: the package imports this module's siblings first

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=_MAIN_HELP, epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_version(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (_add_send, _add_serve, _add_demo, _add_diagram, _add_trace):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")  # never die printing a name the terminal cannot show
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required (send, serve, demo, diagram, trace)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except UsageError as exc:
        command: argparse.ArgumentParser = args.command_parser
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (MissingExtra, GraphvizMissing) as exc:  # one line naming what to install, no traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["EXIT_CODES_HELP", "UsageError", "build_parser", "exit_code_for", "main"]
