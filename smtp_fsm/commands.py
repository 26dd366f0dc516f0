"""Command encoding and argument validation: nothing unsafe ever reaches the wire.

Every value that comes from the caller (EHLO name, addresses, ESMTP
parameters) is checked here *before* a command is produced, so a CR, LF or
other control character raises :class:`LocalProtocolError` and nothing is
written (bpo-43124, GHSA-c7w3: command injection through unchecked values).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import LocalProtocolError

#: RFC 5321 §4.5.3.1.4 sets 512 octets; SIZE, DSN and SMTPUTF8 each extend it
#: (RFC 1870 §3, RFC 3461 §4), so allow their worst case on top.
MAX_COMMAND_LINE = 512 + 26 + 600 + 10

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_PARAM_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+\Z")  # RFC 5321 esmtp-value: no "=", SP or controls
_EHLO_NAME = re.compile(r"(\[[^\[\]\s]+\]|[^\s\[\]<>]+)\Z")


def check_no_controls(value: str, what: str) -> None:
    """Refuse CR, LF, every other C0 control and DEL in ``value``."""
    bad = _CONTROL.search(value)
    if bad is not None:
        raise LocalProtocolError(f"{what} contains the control character {bad.group()!r}: {value!r}")


def check_ehlo_name(name: str) -> str:
    check_no_controls(name, "EHLO name")
    if not name or not _EHLO_NAME.match(name) or not name.isascii():
        raise LocalProtocolError(f"EHLO name must be a domain or an address literal like [192.0.2.1], not {name!r}")
    return name


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext: "+", "=" and everything outside 33..126 as +XX."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def format_params(params: dict[str, str | None]) -> str:
    """ESMTP parameters as `` KEY=value``; values must already be xtext where the RFC says so."""
    if not params:
        return ""
    parts = []
    for key, value in params.items():
        if not _KEYWORD.match(key):
            raise LocalProtocolError(f"invalid ESMTP parameter name {key!r}")
        if value is None:
            parts.append(f" {key}")
            continue
        if not _PARAM_VALUE.match(value):
            raise LocalProtocolError(f"invalid ESMTP parameter value {key}={value!r}")
        parts.append(f" {key}={value}")
    return "".join(parts)


def command_line(verb: str, argument: str = "") -> bytes:
    line = f"{verb} {argument}" if argument else verb
    check_no_controls(line, "command")
    encoded = line.encode("utf-8")
    if len(encoded) + 2 > MAX_COMMAND_LINE:
        raise LocalProtocolError(f"command line longer than {MAX_COMMAND_LINE} octets: {line[:60]!r}...")
    return encoded + b"\r\n"


@lru_cache(maxsize=1024)
def mail_from(address: str, params: str = "") -> bytes:
    return command_line("MAIL", f"FROM:<{address}>{params}")


@lru_cache(maxsize=4096)
def rcpt_to(address: str, params: str = "") -> bytes:
    return command_line("RCPT", f"TO:<{address}>{params}")


def bdat(size: int, last: bool) -> bytes:
    """RFC 3030 §2: ``BDAT <size> [LAST]``; the chunk's octets follow the CRLF."""
    return b"BDAT %d LAST\r\n" % size if last else b"BDAT %d\r\n" % size
