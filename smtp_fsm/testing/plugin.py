"""pytest plugin (entry point ``pytest11``): fixtures with real and scripted SMTP servers on 127.0.0.1.

pytest loads this module in every run of every project that has smtp_fsm installed, so it
imports nothing but pytest until a fixture is used: the servers (aiosmtpd), the scripted
server and trustme load then, and a missing extra fails that test with the line to install
it (an error, never a skip that would hide a broken setup).  ``-p no:smtp_fsm`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import ssl

    from ..transcript import Transcript
    from .scripted import Behaviour, ScriptedSMTPServer
    from .servers import LocalSMTPServer


@pytest.fixture
def smtp_server() -> Iterator[LocalSMTPServer]:
    """A real aiosmtpd server on 127.0.0.1 (free port) that keeps every message with its envelope."""
    from .servers import LocalSMTPServer

    with LocalSMTPServer() as server:
        yield server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., LocalSMTPServer]]:
    """Make servers with options (TLS, AUTH, SMTPUTF8, LMTP, PIPELINING...); all stopped at teardown."""
    from .servers import LocalSMTPServer

    started: list[LocalSMTPServer] = []

    def make(**options: Any) -> LocalSMTPServer:
        server = LocalSMTPServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def scripted_smtp_server() -> Iterator[Callable[..., ScriptedSMTPServer]]:
    """Make servers that play a transcript (``S:``/``C:`` text) and fail the test if the client deviates.

    ``scripted_smtp_server(transcript, *behaviours, check=True, timeout=10.0)``
    returns a started server (``.host``, ``.port``).  At teardown every server
    is stopped and, unless made with ``check=False``, ``assert_ok()`` is called.
    """
    from .scripted import ScriptedSMTPServer

    started: list[tuple[ScriptedSMTPServer, bool]] = []

    def make(transcript: Transcript | str, *behaviours: Behaviour, check: bool = True,
             **options: Any) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(transcript, *behaviours, **options).start()
        started.append((server, check))
        return server

    yield make
    for server, _ in reversed(started):
        server.stop()
    for server, check in started:
        if check:
            server.assert_ok()


@dataclass(frozen=True)
class TLSCertificates:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, as ready SSL contexts."""

    ca: Any  # trustme.CA
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_pem: bytes


@pytest.fixture(scope="session")
def _smtp_fsm_ca() -> Any:
    from .._extras import require

    return require("trustme", "testing", "the tls_certificates fixture").CA()


@pytest.fixture
def tls_certificates(_smtp_fsm_ca: Any) -> TLSCertificates:
    """Server and client SSLContexts that trust each other (made with trustme; fresh contexts per test)."""
    import ssl

    cert = _smtp_fsm_ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    _smtp_fsm_ca.configure_trust(client_context)
    return TLSCertificates(_smtp_fsm_ca, server_context, client_context, _smtp_fsm_ca.cert_pem.bytes())
