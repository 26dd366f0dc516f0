"""One message on its way: the work queue's items, the commands in flight, the recipients' replies.

``build_transaction`` turns what the caller gave (a ``Submission``) into a
``Transaction`` once the server's capabilities are known: addresses encoded
(SMTPUTF8 or IDNA), ESMTP parameters chosen (SIZE, BODY, SMTPUTF8, DSN),
the payload serialised and checked (dot-stuffed only as it goes out, for DATA).  Everything
that can be refused locally is refused here, before a byte is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message

from .addresses import encode_address
from .auth import MAX_AUTH_LINE, Credentials
from .commands import format_params, mail_from, rcpt_to, xtext
from .errors import LocalProtocolError
from .extensions import Capabilities
from .message import Payload, payload_from_bytes, payload_from_message
from .replies import Reply
from .results import Outcome, SendResult

_DSN_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


@dataclass(slots=True)
class Pending:
    """A command whose reply has not come yet."""

    verb: str
    trigger: str  # what its reply fires (protocol.table.REPLY_TRIGGERS)
    tx: Transaction | None = None
    rcpt: str | None = None


@dataclass(slots=True)
class Transaction:
    """One message being sent: its commands and the replies so far (one round per 452 retry)."""

    ticket: int
    result: SendResult
    mail_line: bytes  # the MAIL FROM command, validated and encoded once
    rcpt_lines: dict[str, bytes]  # recipient as given -> its RCPT TO command
    body: bytes  # the normalised content: dot-stuffed as it is sent for DATA, in chunks for BDAT
    chunked: bool
    chunk_size: int
    sender_ok: bool = True
    accepted_count: int = 0
    accepted_round: list[str] = field(default_factory=list)
    rcpt_outstanding: int = 0
    deferred: dict[str, Reply] = field(default_factory=dict)
    chunk_failed: bool = False
    data_reply: Reply | None = None
    mail_reply: Reply | None = None
    final_reply: Reply | None = None  # this round's reply to the end of the content
    round_ok: bool = False  # this round delivered to someone (for LMTP: any delivery reply 2xx)
    recipients_round: tuple[str, ...] = ()
    earlier: Reply | None = None  # the final reply of an earlier round that delivered (452 retries)
    rcpts_sent: int = 0  # lockstep: how many of this round's recipients were sent RCPT TO
    chunks_sent: int = 0  # BDAT chunks of this round sent so far
    ends_due: int = 1  # replies to the end of the data still due (LMTP: one per accepted recipient)
    content_out: bool = False  # this round's content was handed to the transport (data_to_send)
    # A BDAT window (PIPELINING + CHUNKING): this round went out while earlier messages were in flight
    # (``ahead``), or its BDAT went in one group with its MAIL and RCPT (``grouped``); ``resend``: the
    # server refused it for the order of the commands, not for itself, so it goes again (once).
    ahead: bool = False
    grouped: bool = False
    resend: bool = False
    resent: bool = False

    def start_round(self, recipients: Sequence[str]) -> None:
        if self.round_ok:
            self.earlier = self.result.reply  # a 452 retry: what was delivered so far stands
        self.recipients_round = tuple(recipients)
        self.mail_reply = self.final_reply = None
        self.round_ok = False
        self.sender_ok = True
        self.accepted_count = 0
        if self.accepted_round:  # (new ones only when used: a first round finds them fresh)
            self.accepted_round = []
        self.rcpt_outstanding = len(recipients)
        if self.deferred:
            self.deferred = {}
        self.chunk_failed = False
        self.data_reply = None
        self.rcpts_sent = 0
        self.chunks_sent = 0
        self.ends_due = 1
        self.content_out = False

    def restart(self) -> None:
        """Forget an attempt the server refused for the order of the commands: it is sent again whole."""
        result = self.result
        result.accepted.clear()
        result.refused.clear()
        result.delivery.clear()
        result.unfinished.clear()
        result.reply = result.error = None
        result.outcome = Outcome.NOT_SENT
        self.earlier = None
        self.round_ok = False
        self.ahead = self.grouped = self.resend = False
        self.resent = True

    @property
    def chunks_left(self) -> int:
        """BDAT chunks of this round not sent yet (an empty body still takes one)."""
        return max(1, -(-len(self.body) // self.chunk_size)) - self.chunks_sent

    def next_chunk(self) -> tuple[bytes, bool]:
        """The next BDAT chunk of this round, and whether it is the last."""
        start = self.chunks_sent * self.chunk_size
        self.chunks_sent += 1
        return self.body[start : start + self.chunk_size], self.chunks_left == 0


@dataclass(slots=True)
class Submission:
    """A message as the caller gave it, before the server's capabilities are known."""

    sender: str
    recipients: tuple[str, ...]
    source: Message | bytes | str
    notify: Sequence[str] | Mapping[str, Sequence[str]] | None
    ret: str | None
    envid: str | None
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    #: Bytes payloads do not depend on the server: normalised and checked once, kept here.
    prepared: Payload | None = None


@dataclass(slots=True)
class Work:
    kind: str  # "mail", "noop", "rset", "quit"
    ticket: int
    submission: Submission | None = None
    tx: Transaction | None = None


def build_transaction(sub: Submission, caps: Capabilities | None, chunked: bool, chunk_size: int) -> Transaction:
    """Validate a submission against ``caps`` (or only its syntax when None) and encode it;
    ``chunked``: the content goes in BDAT chunks (the table's ``uses_chunking``)."""
    smtputf8 = caps.smtputf8 if caps is not None else True
    sender_wire, sender_utf8 = encode_address(sub.sender, smtputf8=smtputf8, allow_null=True)
    rcpt_lines: dict[str, bytes] = {}
    needs_utf8 = sender_utf8
    dsn = sub.notify is not None or sub.ret is not None or sub.envid is not None
    if dsn and caps is not None and not caps.dsn:
        raise LocalProtocolError("DSN options given but the server does not offer DSN (RFC 3461)")
    rcpt_extra = option_params(sub.rcpt_options) if sub.rcpt_options else None
    for rcpt in sub.recipients:
        wire, utf8 = encode_address(rcpt, smtputf8=smtputf8)
        needs_utf8 = needs_utf8 or utf8
        notify = None if sub.notify is None else notify_for(sub.notify, rcpt)
        if notify is None and not rcpt_extra:
            rcpt_lines[rcpt] = rcpt_to(wire)  # (the common case: a plain RCPT TO, cached)
            continue
        params: dict[str, str | None] = dict(rcpt_extra or {})
        if notify is not None:
            params["NOTIFY"] = notify
            params["ORCPT"] = "rfc822;" + xtext(rcpt)
        rcpt_lines[rcpt] = rcpt_to(wire, format_params(params))
    if isinstance(sub.source, Message):
        utf8_headers = needs_utf8 and (caps is None or caps.smtputf8)
        payload = payload_from_message(sub.source, utf8=utf8_headers)
    else:
        payload = sub.prepared or payload_from_bytes(sub.source)
        sub.prepared = payload
    params = option_params(sub.mail_options) if sub.mail_options else {}
    if caps is not None:
        eightbitmime = caps.eightbitmime
        if payload.eight_bit or payload.utf8_headers:  # (only those may need re-encoding for this server)
            payload = payload.for_server(eightbitmime, smtputf8)
        if caps.size:
            limit = caps.max_size
            if limit is not None and payload.size > limit:
                raise LocalProtocolError(
                    f"message is {payload.size} octets; the server accepts at most {limit} (SIZE, RFC 1870)"
                )
            params["SIZE"] = str(payload.size)
        if payload.eight_bit and eightbitmime:
            params["BODY"] = "8BITMIME"
        if needs_utf8 or payload.utf8_headers:
            params["SMTPUTF8"] = None
    if sub.ret is not None:
        if sub.ret not in ("FULL", "HDRS"):
            raise LocalProtocolError(f"DSN RET must be FULL or HDRS, not {sub.ret!r}")
        params["RET"] = sub.ret
    if sub.envid is not None:
        params["ENVID"] = xtext(sub.envid)
    body = payload.content  # (dot-stuffed as it goes out: a queued message holds no stuffed copy of it)
    result = SendResult(sub.sender, sub.recipients)
    return Transaction(0, result, mail_from(sender_wire, format_params(params)), rcpt_lines, body, chunked,
                       chunk_size)


def same_envelope(mail_line: bytes, other: bytes) -> bool:
    """Two MAIL commands that differ at most in their SIZE declaration (RFC 1870, only a question of
    whether the server takes that many octets): the same sender with the same parameters."""
    return mail_line == other or _SIZE_PARAM.sub(b"", mail_line) == _SIZE_PARAM.sub(b"", other)


_SIZE_PARAM = re.compile(rb" SIZE=[0-9]+(?=[ \r])")


def credentials_from(username: str | None, password: str | None, oauth_token: str | None) -> Credentials | None:
    if username is None:
        if password is not None or oauth_token is not None:
            raise LocalProtocolError("a password or oauth_token needs a username")
        return None
    if password is None and oauth_token is None:
        raise LocalProtocolError("username given without a password or oauth_token")
    for value, what in ((username, "username"), (password, "password"), (oauth_token, "oauth_token")):
        if value is not None and ("\0" in value or "\r" in value or "\n" in value):
            raise LocalProtocolError(f"{what} contains NUL, CR or LF")
    # RFC 4954 §4: a response line (base64, CRLF) is at most 12288 octets.  An initial response
    # too long for the AUTH command itself is sent as the answer to an empty 334 instead.
    longest = len(f"user={username}\x01auth=Bearer {oauth_token or ''}\x01\x01\0{password or ''}".encode())
    if 4 * ((longest + 2) // 3) + len("\r\n") > MAX_AUTH_LINE:
        raise LocalProtocolError(f"credentials too long for an AUTH line (RFC 4954 allows {MAX_AUTH_LINE} octets)")
    return Credentials(username, password, oauth_token)


def option_params(options: Sequence[str]) -> dict[str, str | None]:
    if not options:
        return {}
    params: dict[str, str | None] = {}
    for option in options:
        key, eq, value = option.partition("=")
        params[key.upper()] = value if eq else None
    format_params(params)  # validates
    return params


def notify_for(notify: Sequence[str] | Mapping[str, Sequence[str]] | None, rcpt: str) -> str | None:
    if notify is None:
        return None
    values = notify.get(rcpt) if isinstance(notify, Mapping) else notify
    if values is None:
        return None
    words = [value.upper() for value in ([values] if isinstance(values, str) else values)]
    if words == ["NEVER"]:
        return "NEVER"
    if not words or not set(words) <= _DSN_NOTIFY:
        raise LocalProtocolError(f"DSN NOTIFY must be NEVER or some of SUCCESS, FAILURE, DELAY; not {words}")
    return ",".join(words)
