"""SASL mechanisms (RFC 4954) as small step functions; no I/O, no state of their own.

A mechanism gives the initial response (or None when the mechanism starts
with a server challenge) and answers each decoded 334 challenge.  The session
base64-encodes what they return, and the protocol table decides when they
run.  Secrets appear only in the bytes these functions return, which the
session marks sensitive so traces, logs and reprs show a placeholder.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from .errors import LocalProtocolError

#: RFC 4954 §4: a line of the SASL exchange (a response to a 334) may be up to 12288 octets.
MAX_AUTH_LINE = 12288
#: RFC 4954 §4: the AUTH command itself keeps SMTP's command line limit (RFC 5321 §4.5.3.1.4);
#: an initial response that would exceed it is sent after an empty 334 instead.
MAX_AUTH_COMMAND = 512


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None = None
    oauth_token: str | None = None

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(username={self.username!r}, password=<masked>, oauth_token=<masked>)"


def _plain_initial(creds: Credentials) -> bytes:
    return f"\0{creds.username}\0{creds.password or ''}".encode()


def _login_step(creds: Credentials, challenge: bytes, step: int) -> bytes:
    # The LOGIN draft: first challenge asks for the user name, the second for the password.
    if step == 0:
        return creds.username.encode()
    return (creds.password or "").encode()


def _cram_md5_step(creds: Credentials, challenge: bytes, step: int) -> bytes:
    digest = hmac.new((creds.password or "").encode(), challenge, "md5").hexdigest()
    return f"{creds.username} {digest}".encode()


def _xoauth2_initial(creds: Credentials) -> bytes:
    return f"user={creds.username}\x01auth=Bearer {creds.oauth_token or ''}\x01\x01".encode()


def _xoauth2_step(creds: Credentials, challenge: bytes, step: int) -> bytes:
    # A 334 after the initial response carries a JSON error; the client answers
    # with an empty line and the server then sends the final 5xx.
    return b""


def _no_initial(creds: Credentials) -> None:
    return None


@dataclass(frozen=True)
class Mechanism:
    name: str
    initial: Callable[[Credentials], bytes | None]
    respond: Callable[[Credentials, bytes, int], bytes] | None  # None: no challenge expected (max_steps 0)
    max_steps: int
    needs_password: bool = True


MECHANISMS: dict[str, Mechanism] = {
    "XOAUTH2": Mechanism("XOAUTH2", _xoauth2_initial, _xoauth2_step, 1, needs_password=False),
    "CRAM-MD5": Mechanism("CRAM-MD5", _no_initial, _cram_md5_step, 1),
    "PLAIN": Mechanism("PLAIN", _plain_initial, None, 0),
    "LOGIN": Mechanism("LOGIN", _no_initial, _login_step, 2),
}

#: Preference when the caller names none: a bearer token when one is given,
#: then the challenge-response mechanism that never sends the password, then
#: the two that do (safe only under TLS, which the insecure-AUTH rule enforces).
PREFERENCE: tuple[str, ...] = ("XOAUTH2", "CRAM-MD5", "PLAIN", "LOGIN")


def choose_mechanism(offered: tuple[str, ...], creds: Credentials, requested: str | None) -> Mechanism | None:
    """The mechanism to use, or None when the server offers nothing usable."""
    if requested is not None:
        name = requested.upper()
        if name not in MECHANISMS:
            raise LocalProtocolError(f"unsupported AUTH mechanism {requested!r}; choose from {', '.join(PREFERENCE)}")
        return MECHANISMS[name] if name in offered else None
    for name in PREFERENCE:
        mech = MECHANISMS[name]
        usable = creds.oauth_token is not None if not mech.needs_password else creds.password is not None
        if name in offered and usable:
            return mech
    return None
