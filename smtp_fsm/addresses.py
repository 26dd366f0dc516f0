"""Envelope addresses: only an RFC 5321 §4.1.2 Mailbox (RFC 6531 when UTF-8) ever goes out.

``encode_address`` is the one check, used by the engine for MAIL FROM and each
RCPT TO before a byte is written, and by the command line for what it is given.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from .commands import check_no_controls
from .domains import u_label_problem
from .errors import LocalProtocolError

#: RFC 5321 §4.1.2 atext (RFC 5322 §3.2.3): the characters an unquoted local part may use besides ".".
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ATEXT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-")
#: RFC 5321 §4.1.2 sub-domain (Let-dig [Ldh-str]) of at most 63 octets (RFC 1035 §2.3.4).
_LDH_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LDH_LABEL_RE = re.compile(_LDH_LABEL + r"\Z")
_LDH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
#: The common case in one match: Dot-string "@" LDH labels, the domain at most 255 octets (RFC 5321 §4.5.3.1.2).
#: "xn--" labels are left to the slow path, which checks that they are real A-labels (RFC 5890 §2.3.2.1).
_FAST_MAILBOX = re.compile(
    "[" + _ATEXT + r"]+(?:\.[" + _ATEXT + "]+)*"
    r"@(?=[^@]{1,255}\Z)(?![Xx][Nn]--)" + _LDH_LABEL + r"(?:\.(?![Xx][Nn]--)" + _LDH_LABEL + r")*\Z"
)
#: Non-ASCII code points refused anywhere in an address: C1 controls (NEL ends a line for some software),
#: the Unicode line and paragraph separators, and lone surrogates, which have no UTF-8 form.
_UNSAFE_NON_ASCII = re.compile("[\x80-\x9f\u2028\u2029\ud800-\udfff]")
#: RFC 5321 §4.1.3 IPv4-address-literal: four Snum; their values are checked by ipaddress.
_IPV4_LITERAL = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
#: IPv6-addr characters; ipaddress alone would also take a "%scope" suffix, which RFC 5321 has no room for.
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+\Z")


@lru_cache(maxsize=4096)  # a stream of messages repeats its addresses; the answer never changes
def encode_address(address: str, *, smtputf8: bool, allow_null: bool = False) -> tuple[str, bool]:
    """Validate ``address`` and return (the address as it goes on the wire, needs SMTPUTF8).

    This is the one check for envelope addresses: only an RFC 5321 §4.1.2 Mailbox (with the RFC 6531
    §3.3 UTF-8 extensions) goes out, so nothing a server might read differently from us is ever sent.
    ``allow_null`` marks the reverse-path (MAIL FROM): it may be the null sender "" (RFC 5321 §4.5.5),
    and it may not be the bare ``Postmaster``, which only a forward-path may be (§4.1.1.3).

    A non-ASCII local part needs SMTPUTF8 (RFC 6531).  A non-ASCII domain with an ASCII local part is
    sent as IDNA A-labels when the server lacks SMTPUTF8, and as UTF-8 when it has it.  Every refusal
    is a :class:`LocalProtocolError` naming the problem and the address.
    """
    if _FAST_MAILBOX.match(address):  # its character classes hold no control character, '<' or '>'
        return address, False
    check_no_controls(address, "address")
    if "<" in address or ">" in address:
        # Legal inside a quoted local part, but the path itself is delimited by them: never worth the risk.
        raise LocalProtocolError(f"address must not contain '<' or '>': {address!r}")
    if not address:
        if allow_null:
            return "", False
        raise LocalProtocolError("empty recipient address")
    return _encode_mailbox(address, smtputf8=smtputf8, sender=allow_null)


def ascii_domain(address: str) -> str:
    """The domain of ``address`` as DNS is asked for it: checked, IDNA A-labels, lower case
    (an address literal such as ``[192.0.2.1]`` as it is)."""
    _, at, domain = address.rpartition("@")
    if not at:
        raise LocalProtocolError(f"address {address!r} has no '@domain'")
    return _check_domain(address, domain).lower()


def _refusal(address: str, problem: str) -> LocalProtocolError:
    return LocalProtocolError(f"address {address!r}: {problem}")


def _encode_mailbox(address: str, *, smtputf8: bool, sender: bool) -> tuple[str, bool]:
    """The slow path of :func:`encode_address`: quoted local parts, literals, UTF-8, and every refusal."""
    if address.lower() == "postmaster":
        if sender:
            raise _refusal(address, "Postmaster without a domain is only a recipient (RFC 5321 §4.1.1.3); "
                                    "a sender needs a domain, or is the null sender ''")
        return address, False
    bad = _UNSAFE_NON_ASCII.search(address)
    if bad is not None:
        char = bad.group()
        what = f"the lone surrogate {char!r} has no UTF-8 form" if "\ud800" <= char <= "\udfff" else (
            f"the control character {char!r} is not allowed")
        raise _refusal(address, what)
    local, domain = _split_mailbox(address)
    _check_local_part(address, local)
    ascii_domain = _check_domain(address, domain)
    if not local.isascii():
        if not smtputf8:
            raise _refusal(address, "the local part is not ASCII and the server does not offer SMTPUTF8 (RFC 6531)")
        return address, True
    if domain.isascii():
        return address, False
    if smtputf8:
        return address, True
    return f"{local}@{ascii_domain}", False


def _split_mailbox(address: str) -> tuple[str, str]:
    """(local part, domain): a quoted local part may hold "@", a domain never does."""
    if address.startswith('"'):
        end = _quoted_string_end(address)
        if end is None:
            raise _refusal(address, "the quoted local part has no closing '\"'")
        if end == len(address):
            raise _refusal(address, "it has no '@' and a domain (RFC 5321 §4.1.2 Mailbox)")
        if address[end] != "@":
            raise _refusal(address, "a quoted local part must be the whole local part, followed by '@' "
                                    "(RFC 5321 §4.1.2 Quoted-string)")
        return address[:end], address[end + 1:]
    local, at, domain = address.rpartition("@")
    if not at:
        raise _refusal(address, "it has no '@' and a domain (RFC 5321 §4.1.2 Mailbox)")
    return local, domain


def _quoted_string_end(address: str) -> int | None:
    """The index just past the '"' that closes the quoted string at the start of ``address``."""
    i = 1
    while i < len(address):
        char = address[i]
        if char == "\\":
            i += 2
        elif char == '"':
            return i + 1
        else:
            i += 1
    return None


def _check_local_part(address: str, local: str) -> None:
    """RFC 5321 §4.1.2 Local-part = Dot-string / Quoted-string, UTF-8 allowed in both (RFC 6531 §3.3).

    No length limit: §4.5.3.1.1's 64 octets bind the receiving server, and §4.5.3.1 lets a client send more.
    """
    if not local:
        raise _refusal(address, "the local part before '@' is empty")
    if local.startswith('"'):
        # Controls, '<' and '>' are already refused and an unescaped '"' would have ended the string, so
        # every other character is qtextSMTP or UTF8-non-ascii; only what follows a backslash is left.
        i = 1
        while i < len(local) - 1:
            if local[i] == "\\":
                escaped = local[i + 1]
                if not " " <= escaped <= "~":
                    raise _refusal(address, f"in a quoted local part '\\' may only escape printable ASCII or "
                                            f"a space, not {escaped!r} (RFC 5321 §4.1.2 quoted-pairSMTP)")
                i += 2
            else:
                i += 1
        return
    for char in local:
        if char in _ATEXT_CHARS or char == ".":
            continue
        if char == " ":
            raise _refusal(address, "a space is not allowed outside a quoted local part")
        if char.isascii():
            raise _refusal(address, f"{char!r} is not allowed in an unquoted local part; quote the local part "
                                    "if it really holds one (RFC 5321 §4.1.2 Dot-string)")
        if char.isspace():
            raise _refusal(address, f"the space {char!r} is not allowed outside a quoted local part")
        # Any other non-ASCII character is atext under RFC 6531 §3.3 (UTF8-non-ascii).
    if "" in local.split("."):
        raise _refusal(address, "the local part has a '.' at its start or end, or two in a row "
                                "(RFC 5321 §4.1.2 Dot-string); quote it if it really does")








def _check_domain(address: str, domain: str) -> str:
    """Check ``domain`` (RFC 5321 §4.1.2 Domain or address-literal); return its ASCII form (A-labels)."""
    if not domain:
        raise _refusal(address, "the domain after '@' is empty")
    if domain.startswith("["):
        _check_address_literal(address, domain)
        return domain
    if domain.endswith("."):
        raise _refusal(address, "the domain ends with '.'; write it without the trailing dot (RFC 5321 §4.1.2)")
    ascii_domain = ".".join(_check_label(address, label) for label in domain.split("."))
    if len(ascii_domain) > 255:
        raise _refusal(address, f"the domain is {len(ascii_domain)} octets long, over the 255 allowed "
                                "(RFC 5321 §4.5.3.1.2)")
    return ascii_domain


def _check_label(address: str, label: str) -> str:
    """Check one domain label; return it as it goes to a server without SMTPUTF8 (an A-label if non-ASCII)."""
    if not label:
        raise _refusal(address, "the domain has an empty label (a '.' at its start or two in a row)")
    if not label.isascii():
        problem = u_label_problem(label)
        if problem is not None:
            raise _refusal(address, f"domain label {label!r} is not a valid IDNA U-label: {problem}")
        # RFC 3492 Punycode of the U-label itself: RFC 5891 §4.4, with no IDNA2003 mapping in between.
        a_label = "xn--" + label.encode("punycode").decode("ascii")
        if len(a_label) > 63:
            raise _refusal(address, f"domain label {label!r} is {len(a_label)} octets long as the A-label "
                                    f"{a_label!r}, over the 63 allowed (RFC 5890 §2.3.2.1)")
        return a_label
    if _LDH_LABEL_RE.match(label):
        if label[:4].lower() == "xn--":
            _check_a_label(address, label)
        return label
    if len(label) > 63:
        raise _refusal(address, f"domain label {label[:20]!r}... is {len(label)} octets long, over the 63 allowed "
                                "(RFC 1035 §2.3.4)")
    for char in label:
        if char not in _LDH_CHARS:
            raise _refusal(address, f"domain label {label!r} has the character {char!r}; a label is letters, digits "
                                    "and '-' (RFC 5321 §4.1.2 sub-domain)")
    raise _refusal(address, f"domain label {label!r} must not begin or end with '-' (RFC 5321 §4.1.2 sub-domain)")


def _check_a_label(address: str, label: str) -> None:
    """An "xn--" label must be a real A-label: the Punycode of a valid U-label (RFC 5890 §2.3.2.1)."""
    lower = label.lower()  # A-labels compare without regard to ASCII case
    try:
        u_label = lower[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError):
        u_label = ""
    if u_label.isascii() or u_label_problem(u_label) is not None or (
            u_label.encode("punycode").decode("ascii") != lower[4:]):
        raise _refusal(address, f"domain label {label!r} starts with 'xn--' but is not a valid IDNA A-label "
                                "(RFC 5890 §2.3.2.1)")


def _check_ip(address: str, domain: str, text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
    try:
        kind(text)
    except ValueError as exc:
        version = 4 if kind is ipaddress.IPv4Address else 6
        raise _refusal(address, f"{domain} is not a valid IPv{version} address: {exc}") from None


def _check_address_literal(address: str, domain: str) -> None:
    """RFC 5321 §4.1.3: [IPv4] or [IPv6:...]; no General-address-literal tag is registered for mail."""
    if not domain.endswith("]"):
        raise _refusal(address, "an address literal must end the address with ']' (RFC 5321 §4.1.3)")
    inner = domain[1:-1]
    tag, colon, value = inner.partition(":")
    if not colon:
        if not _IPV4_LITERAL.match(inner):
            raise _refusal(address, f"{domain} is not an IPv4 address literal like [192.0.2.1] (RFC 5321 §4.1.3)")
        _check_ip(address, domain, inner, ipaddress.IPv4Address)
        return
    if tag.lower() != "ipv6":  # ABNF strings match any case (RFC 5234 §2.3)
        if not tag:
            raise _refusal(address, f"an IPv6 address literal needs the 'IPv6:' tag, as in [IPv6:{inner}] "
                                    "(RFC 5321 §4.1.3)")
        raise _refusal(address, f"the address literal tag {tag!r} is not supported; only [192.0.2.1] and "
                                "[IPv6:2001:db8::1] are (RFC 5321 §4.1.3)")
    if not _IPV6_CHARS.match(value):
        raise _refusal(address, f"{domain} is not a valid IPv6 address literal (RFC 5321 §4.1.3)")
    _check_ip(address, domain, value, ipaddress.IPv6Address)
    if "::" in value:
        # RFC 5321 §4.1.3 IPv6-comp: "::" stands for at least two groups, so at most 6 others (4 before IPv4).
        groups = [group for group in value.split(":") if group]
        limit = 4 if "." in value else 6
        if len(groups) - ("." in value) > limit:
            raise _refusal(address, f"in {domain} '::' stands for a single group; RFC 5321 §4.1.3 wants it to "
                                    "replace at least two")
