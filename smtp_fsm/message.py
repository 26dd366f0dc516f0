"""Messages -> envelope and wire payload: Bcc stripping, CRLF, dot-stuffing, 8bit/UTF-8, SIZE.

Everything here works on whole byte strings with C-speed operations (no
Python loop per line), and first checks whether a payload needs any change
at all: most do not.

The two rules that matter most for security:

* SMTP smuggling (CVE-2023-51764/5/6): every bare CR and bare LF becomes CRLF
  *before* dot-stuffing, so the wire carries ``CRLF.CRLF`` exactly once, at
  the end of the data.
* Header injection (CVE-2024-6923): Python 3.11.7 predates
  ``verify_generated_headers``, so the serialised header block of an
  ``EmailMessage`` is checked here: every line must be a field or a folded
  continuation and the field count must match the message's headers.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import getaddresses

from .errors import LocalProtocolError

#: RFC 5321 §4.5.3.1.6: 1000 octets per text line including CRLF.
MAX_TEXT_LINE = 998

_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_TEXT_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")



def normalize_line_endings(data: bytes) -> bytes:
    """Bare CR and bare LF become CRLF; the result ends with CRLF (empty stays empty).

    Most payloads need no change, and proving that is the cost: splitting on CRLF
    and looking for a CR or LF in what is left takes half the time of counting
    CR, LF and CRLF separately (the counts do not use memchr).
    """
    rest = b"".join(data.split(b"\r\n"))
    if b"\r" in rest or b"\n" in rest:
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def check_line_length(content: bytes) -> None:
    """Refuse a line over 998 octets in CRLF-normalised ``content``.

    From a line start p, the last LF within the next 1000 bytes ends every line
    that starts before it, and each of those is short enough; no LF there means
    the line at p is too long.  So the scan jumps about 1000 bytes per step with
    C-speed ``rfind`` instead of visiting every line (or letting a regex retry at
    every offset, which cost 23 ms at 100 KiB).
    """
    window = MAX_TEXT_LINE + 2  # the text, CR and LF
    start, size = 0, len(content)
    while size - start > window:
        last = content.rfind(b"\n", start, start + window)
        if last < 0:
            raise LocalProtocolError(
                f"a text line is longer than {MAX_TEXT_LINE} octets (RFC 5321 §4.5.3.1.6), "
                f"starting at byte {start}: {content[start:start + 40]!r}..."
            )
        start = last + 1
    # What is left is at most one window long, so only an unterminated last line can be too long.
    if not content.endswith(b"\n") and size - (content.rfind(b"\n", start) + 1) > MAX_TEXT_LINE:
        raise LocalProtocolError(f"the last text line is longer than {MAX_TEXT_LINE} octets (RFC 5321 §4.5.3.1.6)")


#: Past this many dots that start no line, a full scan is cheaper than looking at each.
_DOTS_TO_CHECK = 64


def _has_dot_line(content: bytes) -> bool:
    """Does a line start with "."?  ``find(b".")`` is memchr-fast; dots are rare in mail."""
    if content.startswith(b"."):
        return True
    position = content.find(b".")
    for _ in range(_DOTS_TO_CHECK):
        if position < 0:
            return False
        if content[position - 1] == 0x0A:  # the dot follows a LF: it starts a line
            return True
        position = content.find(b".", position + 1)
    return b"\n." in content


#: The end of the data (RFC 5321 §4.1.1.4): after normalised content, the wire carries CRLF.CRLF.
DATA_END = b".\r\n"


def stuff_dots(content: bytes) -> bytes:
    """RFC 5321 §4.5.2 on normalised content: a line that starts with "." gets another.  Content
    without such a line comes back as the same object (no copy)."""
    if _has_dot_line(content):
        content = content.replace(b"\r\n.", b"\r\n..")
        if content.startswith(b"."):
            content = b"." + content
    return content


def dot_stuff(content: bytes) -> bytes:
    """RFC 5321 §4.5.2 on normalised content, plus the terminating ``.CRLF``."""
    return stuff_dots(content) + DATA_END


def check_header_block(serialised: bytes, expected_fields: int) -> None:
    """Refuse a header block that carries more fields than the message has (injection)."""
    end = serialised.find(b"\r\n\r\n")
    block = serialised[: end + 2] if end >= 0 else serialised
    lines = block.split(b"\r\n")[:-1]
    if b"\r" in block.replace(b"\r\n", b"") or b"\n" in block.replace(b"\r\n", b""):
        raise LocalProtocolError("a header contains a bare CR or LF")
    fields = 0
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue
        if not _FIELD_LINE.match(line):
            raise LocalProtocolError(f"header line is neither a field nor a continuation: {line[:60]!r}")
        fields += 1
    if fields != expected_fields:
        raise LocalProtocolError(
            f"the serialised header block has {fields} fields but the message has {expected_fields}: "
            "a header value contains CR or LF (header injection)"
        )


def serialise(msg: Message, *, utf8: bool = False, seven_bit: bool = False) -> bytes:
    """``msg`` as CRLF bytes with the SMTP policy, Bcc and Resent-Bcc removed, headers verified."""
    for name in set(msg.keys()):
        for value in msg.get_all(name, []):
            if isinstance(value, str) and ("\r" in value or "\n" in value) and not _is_folded(value):
                raise LocalProtocolError(f"header {name!r} contains CR or LF: {value[:60]!r}")
    stripped = copy.copy(msg)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    # The message's own policy, as smtplib does: a compat32 message may hold Header objects
    # that only compat32 can fold.
    policy = msg.policy.clone(linesep="\r\n", cte_type="7bit" if seven_bit else "8bit")
    if isinstance(policy, EmailPolicy):
        policy = policy.clone(utf8=utf8)
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, policy=policy).flatten(stripped, linesep="\r\n")
    except (HeaderParseError, ValueError) as exc:
        raise LocalProtocolError(f"message cannot be serialised safely: {exc}") from exc
    data = buffer.getvalue()
    check_header_block(data, len(stripped.keys()))
    return data


def _is_folded(value: str) -> bool:
    # A value parsed from a message keeps its folding: CRLF followed by white space.
    return all(part[:1] in (" ", "\t") for part in _TEXT_LINE_ENDINGS.split(value)[1:])


def envelope_from_headers(msg: Message) -> tuple[str, list[str]]:
    """(sender, recipients) as smtplib.send_message derives them (Resent-* when present)."""
    resent = msg.get_all("Resent-Date")
    if resent is None:
        prefix = ""
    elif len(resent) == 1:
        prefix = "Resent-"
    else:
        raise LocalProtocolError("message has more than one Resent- header block")
    sender_header = msg[prefix + "Sender"] or msg[prefix + "From"]
    senders = [addr for _, addr in getaddresses([str(sender_header)])] if sender_header is not None else []
    fields: list[str] = []
    for name in ("To", "Bcc", "Cc"):
        fields.extend(str(value) for value in msg.get_all(prefix + name, []))
    recipients = [addr for _, addr in getaddresses(fields) if addr]
    return (senders[0] if senders else ""), recipients


@dataclass(frozen=True, slots=True)
class Payload:
    """Message content ready for DATA or BDAT: CRLF-normalised, not yet dot-stuffed."""

    content: bytes
    eight_bit: bool
    utf8_headers: bool
    source: Message | None = None

    @property
    def size(self) -> int:
        """Octets for RFC 1870 ``SIZE=``: the normalised content without the stuffing."""
        return len(self.content)

    def for_server(self, eightbitmime: bool, smtputf8: bool) -> Payload:
        """This payload as the server can take it: re-serialised 7-bit clean when it lacks 8BITMIME."""
        if self.utf8_headers and not smtputf8:
            if self.source is None:
                raise LocalProtocolError("message has UTF-8 headers and the server does not offer SMTPUTF8")
            return payload_from_message(self.source, utf8=False, seven_bit=not eightbitmime)
        if self.eight_bit and not eightbitmime and not smtputf8:
            if self.source is None:
                raise LocalProtocolError(
                    "message has 8-bit bytes and the server offers neither 8BITMIME nor SMTPUTF8; "
                    "pass an EmailMessage so it can be re-encoded 7-bit, or encode it yourself"
                )
            return payload_from_message(self.source, utf8=False, seven_bit=True)
        return self


def payload_from_bytes(data: bytes | str) -> Payload:
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a message is bytes, str or an email Message, not {type(data).__name__}")
        # A snapshot: the content is kept until its 354, and a buffer the caller changes after the
        # call would reach the wire with none of the checks below.
        data = bytes(data)
    content = normalize_line_endings(data)
    check_line_length(content)
    return Payload(content, not content.isascii(), False)


def payload_from_message(msg: Message, *, utf8: bool = False, seven_bit: bool = False) -> Payload:
    content = normalize_line_endings(serialise(msg, utf8=utf8, seven_bit=seven_bit))
    check_line_length(content)
    return Payload(content, not content.isascii(), utf8, msg)


def needs_utf8_headers(addresses: Sequence[str]) -> bool:
    """Raw UTF-8 headers are needed only for non-ASCII addresses (RFC 6532); text uses encoded words."""
    return any(not addr.isascii() for addr in addresses)


__all__ = [
    "DATA_END",
    "EmailMessage",
    "Payload",
    "dot_stuff",
    "envelope_from_headers",
    "normalize_line_endings",
    "payload_from_bytes",
    "payload_from_message",
    "serialise",
    "stuff_dots",
]
